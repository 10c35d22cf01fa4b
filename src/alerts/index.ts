/** Alerting's public surface, for the CLI and the metrics endpoint. */
export type { Alert } from './types.js';
export {
  ConfigError,
  DEFAULT_BASELINE,
  RESOLVED_PLACEHOLDERS,
  RULE_KINDS,
  defaultConfig,
  defaultRules,
  loadAlertConfig,
  parseAlertConfig,
  type AlertConfig,
  type BaselineConfig,
  type ConfigIssue,
  type DeliverySpec,
  type Rule,
  type RuleKind,
  type Severity,
} from './rules.js';
export { AlertEvaluator, type EvaluatorOptions, type RuleSet } from './evaluator.js';
export {
  Dispatcher,
  ExecHook,
  WebhookDelivery,
  createDispatcher,
  type Delivery,
  type DeliveryLogger,
  type DeliveryStats,
  type ExecHookOptions,
  type ExecStats,
  type Route,
  type WebhookOptions,
  type WebhookStats,
} from './deliver.js';
export type { Grouping } from './format.js';
export { AlertHistory, type AlertHistoryOptions } from './history.js';
