import { pino } from 'pino';
import { ExecaCommandRunner } from '../../common/runner.js';
import { buildVmImage } from '../../lab/vm-image.js';
import { XEN_IMAGE_VARIANT, XEN_VM_CACHE_DIR } from './xen-image.js';

/**
 * Build (or find cached) the Xen experiment's image variant and print its timings:
 * `node dist/test/vm/xen-build-image.js [CACHE_DIR]` (default /var/lib/vcstor/vm-cache-xen).
 */
const log = pino({ level: 'info' });
const cacheDir = process.argv[2] ?? XEN_VM_CACHE_DIR;
const result = await buildVmImage({ runner: new ExecaCommandRunner(), cacheDir, log, variant: XEN_IMAGE_VARIANT });
console.log(JSON.stringify(result, null, 2));
