/**
 * The alert record: made by src/alerts/, written by every output below it (the JSONL recording,
 * src/formats/, src/sinks/ for SIEMs, webhooks and exec hooks), so it lives down here with the
 * other record shapes and the outputs import it without reaching up into alerts/.
 */

/** An alert as it is written to JSONL, POSTed to webhooks, handed to exec hooks and SIEM sinks. */
export interface Alert {
  event: 'alert' | 'resolved';
  /** µs since epoch when it fired (or resolved) */
  time: number;
  /** rule name, e.g. 'churn_per_destination' */
  rule: string;
  severity: 'info' | 'warning' | 'critical';
  /** what the alert is about: a destination key, 'table', ... ; rule+subject is the dedup key */
  subject: string;
  /** µs since epoch when the condition started to hold */
  since: number;
  /** the one human line, e.g. "churn to 127.0.0.5:6379/tcp 2 340 new/s (×40 its median), 61 % of table, full in ~3 min; top source 127.0.1.7" */
  message: string;
  /** the figures behind the message */
  values: Record<string, number | string | null>;
  /** who: top destinations, sources, processes at the time */
  top: {
    destinations: { key: string; rate: number }[];
    sources: { key: string; rate: number }[];
    processes?: { key: string; rate: number; pid?: number; comm?: string }[];
  };
  /** the command to look deeper */
  hint: string;
  netns?: string;
}
