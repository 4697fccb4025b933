import type { AgentDefinition } from '../common/agent.js';
import type { GuestAgentConfig } from '../common/config.js';
import { notImplemented } from '../common/errors.js';
import type { GuestAgentHandlers } from '../common/generated/vcstor/v1/GuestAgent.js';
import { makeHandlers, type Operations } from '../common/handlers.js';
import { loadVcstorProto, SERVICE_NAMES } from '../common/proto.js';
import {
  validateIscsiLoginRequest,
  validateMakeFilesystemRequest,
  validateMountFilesystemRequest,
  validateNfsMountRequest,
} from '../common/requests.js';
import { GUEST_DRIVERS } from './drivers.js';
import { validateRunBenchmarkRequest } from './requests.js';

/**
 * The guest's agent. Requests are validated here, at the edge; the attach paths and
 * benchmarks arrive with issues 4 and 5 and answer UNIMPLEMENTED until then.
 */
export const guestAgent: AgentDefinition<GuestAgentConfig> = {
  role: 'guest',
  drivers: GUEST_DRIVERS,
  selectedDrivers: (config) => ({
    'iscsi-initiator': config.guest.iscsiInitiator.driver,
    'nfs-client': config.guest.nfsClient.driver,
    filesystem: 'ext4',
  }),
  createService(runtime, getInfo) {
    const { guest } = runtime.config;
    const operations: Operations<GuestAgentHandlers> = {
      GetInfo: getInfo,
      IscsiLogin: async (request) => {
        validateIscsiLoginRequest(request);
        throw notImplemented('IscsiLogin');
      },
      MountNfs: async (request) => {
        validateNfsMountRequest(request, [guest.mountRoot]);
        throw notImplemented('MountNfs');
      },
      MakeFilesystem: async (request) => {
        validateMakeFilesystemRequest(request);
        throw notImplemented('MakeFilesystem');
      },
      MountFilesystem: async (request) => {
        validateMountFilesystemRequest(request, [guest.mountRoot]);
        throw notImplemented('MountFilesystem');
      },
      RunBenchmark: async (request) => {
        validateRunBenchmarkRequest(request, guest.mountRoot);
        throw notImplemented('RunBenchmark');
      },
    };
    const definition = loadVcstorProto().grpcObject.vcstor.v1.GuestAgent.service;
    return { name: SERVICE_NAMES.guest, definition, implementation: makeHandlers(definition, operations, runtime) };
  },
};
