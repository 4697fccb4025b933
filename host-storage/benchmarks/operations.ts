import type { BenchmarksHandlers } from '../../common/generated/vcstor/v1/Benchmarks.js';
import type { Operations } from '../../common/handlers.js';
import { validateRunBenchmarkRequest } from './requests.js';
import type { HostBenchmarks } from './run.js';

/** The Benchmarks service's operations, all of them (dom0 and guest agents serve it alike). */
export type BenchmarkOperations = Required<Operations<BenchmarksHandlers>>;

/**
 * RunBenchmark in directories under `roots` only (the guest's mount root; dom0's mount
 * root and image roots), each request validated in full before anything runs.
 */
export function benchmarkOperations(benchmarks: HostBenchmarks, roots: readonly string[]): BenchmarkOperations {
  return {
    RunBenchmark: async (request, ctx, send) => {
      validateRunBenchmarkRequest(request, roots);
      await benchmarks.run(request, ctx, send);
    },
  };
}
