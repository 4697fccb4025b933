import type { AgentDefinition } from '../common/agent.js';
import type { StorageAgentConfig } from '../common/config.js';
import { notImplemented } from '../common/errors.js';
import type { StorageAgentHandlers } from '../common/generated/vcstor/v1/StorageAgent.js';
import { makeHandlers, type Operations } from '../common/handlers.js';
import { loadVcstorProto, SERVICE_NAMES } from '../common/proto.js';
import { STORAGE_DRIVERS } from './drivers.js';
import {
  validateCreateVolumeRequest,
  validateDeleteVolumeRequest,
  validateExportIscsiRequest,
  validateExportNfsRequest,
  validateUnexportIscsiRequest,
} from './requests.js';

/**
 * The storage server's agent. Requests are validated here, at the edge; the volume,
 * target and export operations arrive with their drivers (issue 3) and answer
 * UNIMPLEMENTED until then.
 */
export const storageAgent: AgentDefinition<StorageAgentConfig> = {
  role: 'storage',
  drivers: STORAGE_DRIVERS,
  selectedDrivers: (config) => ({
    volumes: config.storage.volumes.driver,
    'iscsi-target': config.storage.iscsiTarget.driver,
    'nfs-server': config.storage.nfsServer.driver,
  }),
  createService(runtime, getInfo) {
    const { storage } = runtime.config;
    const operations: Operations<StorageAgentHandlers> = {
      GetInfo: getInfo,
      CreateVolume: async (request) => {
        validateCreateVolumeRequest(request);
        throw notImplemented('CreateVolume');
      },
      DeleteVolume: async (request) => {
        validateDeleteVolumeRequest(request);
        throw notImplemented('DeleteVolume');
      },
      ExportIscsi: async (request) => {
        validateExportIscsiRequest(request, storage.iscsiTarget.requireChap);
        throw notImplemented('ExportIscsi');
      },
      UnexportIscsi: async (request) => {
        validateUnexportIscsiRequest(request);
        throw notImplemented('UnexportIscsi');
      },
      ExportNfs: async (request) => {
        validateExportNfsRequest(request, storage.nfsServer.exportRoot);
        throw notImplemented('ExportNfs');
      },
    };
    const definition = loadVcstorProto().grpcObject.vcstor.v1.StorageAgent.service;
    return { name: SERVICE_NAMES.storage, definition, implementation: makeHandlers(definition, operations, runtime) };
  },
};
