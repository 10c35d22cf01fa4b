/**
 * Rules files for kernel tests that watch for one rule (or a few): every built-in rule the test
 * does not name is written off, so the test's own traffic trips only the rules it is about.
 */
import { writeFileSync } from 'node:fs';
import { stringify } from 'yaml';
import { defaultRules } from '../../src/alerts/rule-set.js';

export interface RulesFile {
  /**
   * the rules under test, as the file has them: a built-in's name with what it changes (or `true`,
   * the built-in as it is), or a new name with its kind
   */
  rules: Record<string, Record<string, unknown> | true>;
  /** the `deliver` list, when the test delivers */
  deliver?: Record<string, unknown>[];
}

/** The text of a rules file with only RULES on. */
export function onlyRules(file: RulesFile): string {
  const rules: Record<string, unknown> = { ...file.rules };
  for (const { name } of defaultRules()) if (!(name in rules)) rules[name] = false;
  return stringify(file.deliver ? { rules, deliver: file.deliver } : { rules });
}

/** Writes a rules file with only RULES on to PATH, and returns PATH. */
export function writeOnlyRules(path: string, file: RulesFile): string {
  writeFileSync(path, onlyRules(file));
  return path;
}
