/**
 * How an alert is shown to people and machines: the console API and the
 * webhook payload use this one shape.
 */
import type { StoredAlert } from '../storage/alerts-store.js';

/** An alert as the API shows it. */
export interface AlertView {
  readonly key: string;
  readonly kind: string;
  readonly subject: string;
  readonly message: string;
  readonly details: Readonly<Record<string, unknown>>;
  readonly raisedAt: string;
  readonly resolvedAt: string | null;
  readonly timesRaised: number;
}

/** The API view of a stored alert. */
export function alertView(a: StoredAlert): AlertView {
  return {
    key: a.key,
    kind: a.kind,
    subject: a.subject,
    message: a.message,
    details: a.details,
    raisedAt: new Date(a.raisedAt).toISOString(),
    resolvedAt: a.resolvedAt === null ? null : new Date(a.resolvedAt).toISOString(),
    timesRaised: a.timesRaised,
  };
}
