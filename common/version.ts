import { readFileSync } from 'node:fs';

/** vcstor's version, from package.json (this file runs from dist/common/). */
export const VCSTOR_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
).version;
