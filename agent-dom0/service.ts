import type { AgentDefinition } from '../common/agent.js';
import type { Dom0AgentConfig } from '../common/config.js';
import { notImplemented } from '../common/errors.js';
import type { Dom0AgentHandlers } from '../common/generated/vcstor/v1/Dom0Agent.js';
import { makeHandlers, type Operations } from '../common/handlers.js';
import { loadVcstorProto, SERVICE_NAMES } from '../common/proto.js';
import {
  validateIscsiLoginRequest,
  validateMakeFilesystemRequest,
  validateMountFilesystemRequest,
  validateNfsMountRequest,
} from '../common/requests.js';
import { validateName } from '../common/validate.js';
import { DOM0_DRIVERS } from './drivers.js';
import { validateAttachVbdRequest, validateCreateImageRequest, validateDomainConfig } from './requests.js';

/**
 * The hypervisor host's agent. Requests are validated here, at the edge; the attach
 * paths arrive with their drivers (issue 4) and answer UNIMPLEMENTED until then.
 */
export const dom0Agent: AgentDefinition<Dom0AgentConfig> = {
  role: 'dom0',
  drivers: DOM0_DRIVERS,
  selectedDrivers: (config) => ({
    'iscsi-initiator': config.dom0.iscsiInitiator.driver,
    'nfs-client': config.dom0.nfsClient.driver,
    hypervisor: config.dom0.hypervisor.driver,
    filesystem: 'ext4',
  }),
  createService(runtime, getInfo) {
    const { dom0 } = runtime.config;
    const mountRoots = [dom0.mountRoot, ...dom0.imageRoots];
    const operations: Operations<Dom0AgentHandlers> = {
      GetInfo: getInfo,
      IscsiLogin: async (request) => {
        validateIscsiLoginRequest(request);
        throw notImplemented('IscsiLogin');
      },
      MountNfs: async (request) => {
        validateNfsMountRequest(request, mountRoots);
        throw notImplemented('MountNfs');
      },
      MakeFilesystem: async (request) => {
        validateMakeFilesystemRequest(request);
        throw notImplemented('MakeFilesystem');
      },
      MountFilesystem: async (request) => {
        validateMountFilesystemRequest(request, mountRoots);
        throw notImplemented('MountFilesystem');
      },
      CreateImage: async (request) => {
        validateCreateImageRequest(request, dom0.imageRoots);
        throw notImplemented('CreateImage');
      },
      AttachVbd: async (request) => {
        validateAttachVbdRequest(request, dom0.imageRoots);
        throw notImplemented('AttachVbd');
      },
      WriteDomainConfig: async (request) => {
        validateDomainConfig(request.config, dom0.imageRoots);
        throw notImplemented('WriteDomainConfig');
      },
      StartDomain: async (request) => {
        validateName('name', request.name);
        throw notImplemented('StartDomain');
      },
    };
    const definition = loadVcstorProto().grpcObject.vcstor.v1.Dom0Agent.service;
    return { name: SERVICE_NAMES.dom0, definition, implementation: makeHandlers(definition, operations, runtime) };
  },
};
