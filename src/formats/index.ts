/**
 * The format registry: every sink turns a record into one line with `formatFor(name)`. Lines never
 * contain a raw line break (JSON escapes them, CEF writes \n), so any line-oriented transport can
 * carry them.
 */
import { cefLine } from './cef.js';
import type { FormatOptions, SinkRecord } from './common.js';
import { ecsJson } from './ecs-text.js';
import { ocsfDocument } from './ocsf.js';
import { toLine } from '../recording/schema.js';

export type FormatName = 'jsonl' | 'ecs' | 'ocsf' | 'cef';
export const FORMAT_NAMES: readonly FormatName[] = ['jsonl', 'ecs', 'ocsf', 'cef'];

export type Formatter = (rec: SinkRecord) => string;

export interface FormatInfo {
  name: FormatName;
  /** the line is a JSON object (can be embedded as-is in a HEC envelope or a _bulk source) */
  json: boolean;
}

export function isFormatName(s: unknown): s is FormatName {
  return typeof s === 'string' && (FORMAT_NAMES as readonly string[]).includes(s);
}

export function formatFor(name: FormatName = 'jsonl', opts: FormatOptions = {}): Formatter {
  switch (name) {
    case 'jsonl':
      // the documented schema, line for line what `record` and `watch -o` write (docs/schema.md)
      return (rec) => toLine(rec as never);
    case 'ecs':
      return (rec) => ecsJson(rec, opts);
    case 'ocsf':
      return (rec) => JSON.stringify(ocsfDocument(rec, opts));
    case 'cef':
      return (rec) => cefLine(rec, opts);
    default:
      throw new TypeError(`unknown format ${JSON.stringify(name)}`);
  }
}

export function formatInfo(name: FormatName): FormatInfo {
  return { name, json: name !== 'cef' };
}

export * from './common.js';
export { communityId, addressBytes, type CommunityIdTuple } from './community-id.js';
export { ecsDocument, ECS_VERSION } from './ecs.js';
export { ecsJson } from './ecs-text.js';
export { ocsfDocument, closeActivity, OCSF_VERSION, NETWORK_ACTIVITY } from './ocsf.js';
export { cefLine, escapeCefHeader, escapeCefValue } from './cef.js';
export {
  syslogMessage,
  syslogSeverity,
  structuredData,
  octetFrame,
  octetFrameBatch,
  truncateUtf8,
  escapeSdValue,
  FACILITIES,
  DEFAULT_PEN,
  type SyslogHeaderOptions,
} from './syslog.js';
