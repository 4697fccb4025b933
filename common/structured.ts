import { LineCounter, parseDocument, isNode, type Document } from 'yaml';
import type { z } from 'zod';
import { VcstorError } from './errors.js';

/**
 * Parse YAML or JSON text (JSON is YAML) and validate it against a zod schema. Errors
 * name the file, the field path and the line, e.g.
 * `lab.yaml:7: storage.volumes.driver: Invalid option: expected one of "filepool"|"lvm"`.
 * @throws VcstorError INVALID_ARGUMENT
 */
export function parseStructured<S extends z.ZodType>(schema: S, text: string, source: string): z.output<S> {
  const { value, doc, lineCounter } = readStructured(text, source);
  return validateValue(schema, value, source, doc, lineCounter);
}

/** A parsed YAML/JSON text with what is needed to point at its lines later. */
export interface StructuredText {
  value: unknown;
  doc: Document;
  lineCounter: LineCounter;
}

/**
 * Parse YAML or JSON text without validating it.
 * @throws VcstorError INVALID_ARGUMENT on a syntax error, with its line.
 */
export function readStructured(text: string, source: string): StructuredText {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const problems = doc.errors.map((e) => `${source}:${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`);
    throw new VcstorError('INVALID_ARGUMENT', `cannot parse ${source}: ${problems.join('; ')}`);
  }
  return { value: doc.toJS() ?? {}, doc, lineCounter };
}

/**
 * Validate an already-parsed value; with `doc` and `lineCounter`, errors carry lines.
 * @throws VcstorError INVALID_ARGUMENT listing every problem.
 */
export function validateValue<S extends z.ZodType>(
  schema: S,
  value: unknown,
  source: string,
  doc?: Document,
  lineCounter?: LineCounter,
): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const fieldPath = issue.path.map(String);
    const line = doc && lineCounter ? lineOf(doc, lineCounter, fieldPath) : undefined;
    const where = line === undefined ? source : `${source}:${line}`;
    return `${where}: ${fieldPath.length > 0 ? `${fieldPath.join('.')}: ` : ''}${issue.message}`;
  });
  throw new VcstorError('INVALID_ARGUMENT', `invalid ${source}:\n  ${problems.join('\n  ')}`);
}

/** The line of the deepest node along `fieldPath` that exists in the document. */
function lineOf(doc: Document, lineCounter: LineCounter, fieldPath: string[]): number | undefined {
  for (let depth = fieldPath.length; depth >= 0; depth--) {
    const node = depth === 0 ? doc.contents : doc.getIn(fieldPath.slice(0, depth), true);
    if (isNode(node) && node.range) return lineCounter.linePos(node.range[0]).line;
  }
  return undefined;
}
