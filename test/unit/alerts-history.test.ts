import { describe, expect, it } from 'vitest';
import { AlertHistory } from '../../src/alerts/history.js';
import type { Alert } from '../../src/alerts/types.js';

const T0 = 1_700_000_000e6;
function alert(sec: number, n = 0): Alert {
  return {
    event: n % 2 === 0 ? 'alert' : 'resolved',
    time: T0 + sec * 1e6,
    rule: 'churn_per_destination',
    severity: 'warning',
    subject: `127.0.0.${n % 250}:6379/tcp`,
    since: T0 + sec * 1e6,
    message: `churn ${n}`,
    values: {},
    top: { destinations: [], sources: [] },
    hint: '',
  };
}

describe('AlertHistory (Watcher.history)', () => {
  it('keeps at most `max` alerts, the newest, and counts the rest', () => {
    const h = new AlertHistory({ max: 100 });
    // a rule flapping every second for a day: 86 400 alerts, memory for 100
    for (let i = 0; i < 86_400; i++) h.push(alert(i, i));
    expect(h.length).toBe(100);
    expect(h.dropped).toBe(86_300);
    expect(h.all()[0].message).toBe('churn 86300');
    expect(h.all()[99].message).toBe('churn 86399');
  });

  it('lets go of alerts older than maxAge behind the newest (event time)', () => {
    const h = new AlertHistory({ max: 1000, maxAge: 3600 });
    h.push(alert(0, 0), alert(10, 1));
    h.push(alert(3605, 2));
    expect(h.all().map((a) => a.message)).toEqual(['churn 1', 'churn 2']);
    h.push(alert(7300, 3));
    expect(h.all().map((a) => a.message)).toEqual(['churn 3']);
    expect(h.dropped).toBe(3);
  });

  it('defaults to 1000 alerts and a day, and refuses a bound of 0', () => {
    const h = new AlertHistory();
    expect([h.max, h.maxAgeUs]).toEqual([1000, 86_400e6]);
    expect(() => new AlertHistory({ max: 0 })).toThrow(RangeError);
  });
});
