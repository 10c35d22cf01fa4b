/** The JSON Schemas of schema/v1, compiled once with ajv (draft 2020-12) for tests. */
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './netns.js';

export const SCHEMA_DIR = join(ROOT, 'schema', 'v1');

let compiled: Map<string, ValidateFunction> | undefined;

/** kind ("new", "flow", "churn", "doctor", ...) → its validator, from schema/v1/KIND.json */
export function schemas(): Map<string, ValidateFunction> {
  if (compiled) return compiled;
  // strict, but `type: [a, b]` is plain JSON Schema (ajv's strictTypes only frowns on it)
  const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
  const all = new Map<string, ValidateFunction>();
  for (const f of readdirSync(SCHEMA_DIR).filter((n) => n.endsWith('.json')).sort()) {
    all.set(f.slice(0, -'.json'.length), ajv.compile(JSON.parse(readFileSync(join(SCHEMA_DIR, f), 'utf8'))));
  }
  compiled = all;
  return all;
}

/** Validates one record (a parsed line) against its kind's schema; returns the errors, '' when valid. */
export function invalid(rec: unknown, kind = (rec as { event?: unknown })?.event): string {
  const v = typeof kind === 'string' ? schemas().get(kind) : undefined;
  if (!v) return `no schema for event ${JSON.stringify(kind)}`;
  if (v(rec)) return '';
  return (v.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`).join('; ');
}
