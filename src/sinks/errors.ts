/** The sinks' configuration error: the config reader's model (src/config/reader.ts), code ERR_SINK_CONFIG. */
import { ConfigError, type ConfigIssue } from '../config/reader.js';
import { EXIT } from '../util/errors.js';

/** A refused sinks configuration (exit 78): every problem as `file:line: field: reason`. */
export class SinkConfigError extends ConfigError {
  constructor(issues: ConfigIssue[], file = '', exitCode: number = EXIT.config) {
    super('ERR_SINK_CONFIG', file, issues, exitCode);
    this.name = 'SinkConfigError';
  }
}
