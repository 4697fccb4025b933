import { pino } from 'pino';
import { ExecaCommandRunner } from '../../common/runner.js';
import { buildVmImage } from '../../lab/vm-image.js';

/**
 * Build (or find cached) the VM tier's image by hand and print its timings:
 * `node dist/test/vm/build-image.js [CACHE_DIR]`.
 */
const log = pino({ level: 'info' });
const cacheDir = process.argv[2] ?? '/var/lib/vcstor/vm-cache';
const result = await buildVmImage({ runner: new ExecaCommandRunner(), cacheDir, log });
console.log(JSON.stringify(result, null, 2));
