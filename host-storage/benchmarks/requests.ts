import { invalidArgument } from '../../common/errors.js';
import type { RunBenchmarkRequest__Output } from '../../common/generated/vcstor/v1/RunBenchmarkRequest.js';
import { validateFsType } from '../../common/requests.js';
import { validatePathUnder, validateSize, validateText } from '../../common/validate.js';

/** Validation of RunBenchmark requests (guest and dom0 agents): a whole request, before anything runs. */

const FIO_RW = ['read', 'write', 'randread', 'randwrite', 'rw', 'randrw', 'readwrite'];
const FIO_ENGINES = ['', 'psync', 'sync', 'libaio', 'io_uring', 'posixaio'];
/** fio jobs that read and write: their verify checks the blocks they wrote, part of the file. */
export const FIO_MIXED_RW: readonly string[] = ['rw', 'randrw', 'readwrite'];
/** A shared file's name: a plain file name, never a path. */
const SHARED_FILE_NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** A size field where 0 means "the default". */
function optionalSize(field: string, value: number, limits: { min?: number; max?: number } = {}): void {
  if (value !== 0) validateSize(field, value, limits);
}

/** `roots`: where the agent runs benchmarks (its mount root, and dom0's local roots). */
export function validateRunBenchmarkRequest(request: RunBenchmarkRequest__Output, roots: readonly string[]): void {
  validatePathUnder('directory', request.directory, [...roots]);
  validateText('label', request.label);
  switch (request.spec) {
    case 'bonnie': {
      const spec = request.bonnie!;
      optionalSize('bonnie.file_size_bytes', spec.fileSizeBytes, { min: 1024 * 1024 });
      optionalSize('bonnie.chunk_size_bytes', spec.chunkSizeBytes, { min: 256, max: 1024 * 1024 });
      optionalSize('bonnie.ram_bytes', spec.ramBytes, { min: 1024 * 1024 });
      if (spec.fileCountK > 1024) throw invalidArgument('bonnie.file_count_k', 'is more than 1024 (a million files)');
      return;
    }
    case 'postmark': {
      const spec = request.postmark!;
      if (spec.transactions > 100_000_000) throw invalidArgument('postmark.transactions', 'is more than 100 million');
      if (spec.files > 10_000_000) throw invalidArgument('postmark.files', 'is more than 10 million');
      if (spec.subdirectories > 100_000) throw invalidArgument('postmark.subdirectories', 'is more than 100,000');
      optionalSize('postmark.min_file_size_bytes', spec.minFileSizeBytes);
      optionalSize('postmark.max_file_size_bytes', spec.maxFileSizeBytes);
      if (spec.maxFileSizeBytes !== 0 && spec.maxFileSizeBytes < spec.minFileSizeBytes) {
        throw invalidArgument('postmark.max_file_size_bytes', 'is smaller than min_file_size_bytes');
      }
      optionalSize('postmark.read_block_bytes', spec.readBlockBytes, { max: 64 * 1024 * 1024 });
      optionalSize('postmark.write_block_bytes', spec.writeBlockBytes, { max: 64 * 1024 * 1024 });
      if (spec.readBias > 10 || spec.createBias > 10) throw invalidArgument('postmark.read_bias', 'biases are 0-10');
      return;
    }
    case 'fio': {
      const spec = request.fio!;
      if (!FIO_RW.includes(spec.rw)) throw invalidArgument('fio.rw', `${JSON.stringify(spec.rw)} is not one of ${FIO_RW.join(', ')}`);
      if (!FIO_ENGINES.includes(spec.ioengine)) throw invalidArgument('fio.ioengine', `${JSON.stringify(spec.ioengine)} is not one of ${FIO_ENGINES.filter(Boolean).join(', ')}`);
      optionalSize('fio.block_size_bytes', spec.blockSizeBytes, { min: 512, max: 64 * 1024 * 1024 });
      optionalSize('fio.size_bytes', spec.sizeBytes, { min: 4096 });
      if (spec.iodepth > 4096) throw invalidArgument('fio.iodepth', 'is more than 4096');
      if (spec.numjobs > 1024) throw invalidArgument('fio.numjobs', 'is more than 1024');
      if (spec.rwmixRead > 100) throw invalidArgument('fio.rwmix_read', 'is a percentage (0-100)');
      if (spec.runtimeS > 24 * 3600) throw invalidArgument('fio.runtime_s', 'is more than a day');
      // A time-based write phase uses all of the runtime: fio never starts the verify
      // reads and reports success having checked nothing.
      if (spec.verify && spec.runtimeS > 0) throw invalidArgument('fio.verify', 'cannot be combined with runtime_s (fio would spend the runtime writing and verify nothing); size the run with size_bytes instead');
      validateSharedFile(spec);
      if (spec.endFsync && (spec.verifyOnly || spec.rw === 'read' || spec.rw === 'randread')) throw invalidArgument('fio.end_fsync', 'is for jobs that write: this one only reads');
      return;
    }
    case 'sparseImage': {
      const spec = request.sparseImage!;
      optionalSize('sparse_image.image_size_bytes', spec.imageSizeBytes, { min: 64 * 1024 * 1024 });
      optionalSize('sparse_image.file_size_bytes', spec.fileSizeBytes, { min: 4096 });
      optionalSize('sparse_image.block_size_bytes', spec.blockSizeBytes, { min: 512, max: 64 * 1024 * 1024 });
      if (spec.passes > 1000) throw invalidArgument('sparse_image.passes', 'is more than 1000');
      if (spec.fsType !== '') validateFsType('sparse_image.fs_type', spec.fsType);
      if (spec.device !== '') validatePathUnder('sparse_image.device', spec.device, ['/dev']);
      return;
    }
    default:
      throw invalidArgument('spec', 'name a benchmark: bonnie, postmark, fio or sparse_image');
  }
}


/** fio's shared_file and verify_only (a file that stays for other hosts to read back). */
function validateSharedFile(spec: { rw: string; numjobs: number; verify: boolean; sharedFile: string; verifyOnly: boolean }): void {
  if (spec.verifyOnly && spec.sharedFile === '') {
    throw invalidArgument('fio.verify_only', 'needs shared_file: name the file a writer left in .vcstor-shared to read back');
  }
  if (spec.verifyOnly && !spec.verify) {
    throw invalidArgument('fio.verify_only', "needs verify: without it fio reads nothing back and checks nothing; set verify as the writer's job did");
  }
  if (spec.sharedFile === '') return;
  const name = JSON.stringify(spec.sharedFile.slice(0, 120));
  if (spec.sharedFile.includes('/')) {
    throw invalidArgument('fio.shared_file', `${name} contains "/": give a plain file name; the file goes in <directory>/.vcstor-shared/`);
  }
  if (!SHARED_FILE_NAME.test(spec.sharedFile) || spec.sharedFile === '.' || spec.sharedFile === '..') {
    throw invalidArgument('fio.shared_file', `${name} is not a plain file name: 1-100 of A-Z a-z 0-9 . _ -, not "." or ".."`);
  }
  if (spec.numjobs > 1) {
    throw invalidArgument(
      'fio.numjobs',
      `must be 1 with shared_file (got ${spec.numjobs}): all of fio's jobs would use the one file and write over each other's blocks (fio warns "multiple writers may overwrite blocks that belong to other jobs" and its verify fails); run one job per shared file`,
    );
  }
  if (spec.verify && FIO_MIXED_RW.includes(spec.rw)) {
    throw invalidArgument('fio.rw', `${JSON.stringify(spec.rw)} with shared_file and verify: a mixed job writes and verifies only part of the file, so a later verify_only cannot check all of it; use write or randwrite to write a shared file, read or randread (or verify_only) to read it`);
  }
}
