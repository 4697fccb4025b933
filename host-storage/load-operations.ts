import type { LoadSessionsHandlers } from '../common/generated/vcstor/v1/LoadSessions.js';
import type { Operations } from '../common/handlers.js';
import { validateRunLoadRequest, validateStartLoadSessionsRequest, validateStopLoadSessionsRequest } from './load-requests.js';
import type { LoadSessions } from './load-sessions.js';

/** The LoadSessions service's operations, all of them (dom0 and guest agents serve it alike). */
export type LoadSessionOperations = Required<Operations<LoadSessionsHandlers>>;

/** The load-session operations, each request validated in full before anything runs. */
export function loadSessionOperations(load: LoadSessions): LoadSessionOperations {
  return {
    StartLoadSessions: async (request, { signal }) => {
      validateStartLoadSessionsRequest(request);
      return load.start(request, signal);
    },
    RunLoad: async (request, ctx, send) => {
      const spec = validateRunLoadRequest(request);
      await load.run(request.setId, spec, ctx, send);
    },
    StopLoadSessions: async (request) => {
      validateStopLoadSessionsRequest(request);
      return load.stop(request.setId);
    },
  };
}
