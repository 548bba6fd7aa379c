/**
 * One handshake budget for the box (`--max-pending-handshakes` per
 * agent-port process, times the number of workers: server.ts), split
 * among the agent workers: each worker's admission gate (admission.ts)
 * holds at most its share of connections in their TLS handshake, so N
 * workers together never hold more than the budget, and shedding stays a
 * local decision with no IPC per connection. The primary computes the
 * shares and sends each worker its own when the set of running workers
 * changes (a worker that died gives its share to the others until it is
 * forked again).
 */

/**
 * Splits `budget` over `slots` as evenly as whole numbers allow (the first
 * slots get the remainder). Every worker gets at least one, so with more
 * workers than budget the box admits one handshake per worker.
 */
export function handshakeShares(budget: number, slots: readonly number[]): Map<number, number> {
  const shares = new Map<number, number>();
  const n = slots.length;
  if (n === 0) return shares;
  const base = Math.floor(budget / n);
  const extra = budget - base * n;
  [...slots].sort((a, b) => a - b).forEach((slot, i) => shares.set(slot, Math.max(1, base + (i < extra ? 1 : 0))));
  return shares;
}
