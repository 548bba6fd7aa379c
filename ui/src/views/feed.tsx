/**
 * The live check-in feed: batches pushed by the server are gathered and
 * drawn at most four times a second (the newest 300 rows are kept), so the
 * page stays responsive at thousands of events a second. Pausing stops the
 * drawing and counts what arrives; a customer filter reopens the stream.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type Customer, type FeedItem } from '../api.js';
import type { FeedHub } from '../feed-hub.js';

const KEEP = 300;
const DRAW_MS = 250;

export function FeedView({ hub }: { hub: FeedHub }) {
  const [rows, setRows] = useState<readonly (FeedItem & { key: number })[]>([]);
  const [paused, setPaused] = useState(false);
  const [missed, setMissed] = useState(0);
  const [total, setTotal] = useState(0);
  const [customers, setCustomers] = useState<readonly Customer[]>([]);
  const [customer, setCustomer] = useState(hub.filter ?? '');
  const pending = useRef<FeedItem[]>([]);
  const counted = useRef({ total: 0, missed: 0 });
  const pausedRef = useRef(false);
  const nextKey = useRef(0);

  useEffect(() => {
    api<{ customers: Customer[] }>('GET', '/api/v1/customers').then((r) => setCustomers(r.customers), () => setCustomers([]));
  }, []);
  useEffect(() => {
    hub.open(customer || null);
  }, [customer]);
  useEffect(() => {
    const off = hub.subscribe((batch) => {
      const n = batch.items.reduce((a, i) => a + i.count, 0) + batch.more;
      counted.current.total += n;
      if (pausedRef.current) {
        counted.current.missed += n;
        return;
      }
      pending.current.push(...batch.items);
      if (pending.current.length > KEEP) pending.current.splice(0, pending.current.length - KEEP);
    });
    const timer = window.setInterval(() => {
      setTotal(counted.current.total);
      setMissed(counted.current.missed);
      if (pausedRef.current || pending.current.length === 0) return;
      const fresh = pending.current.reverse().map((i) => ({ ...i, key: nextKey.current++ }));
      pending.current = [];
      setRows((old) => [...fresh, ...old].slice(0, KEEP));
    }, DRAW_MS);
    return () => {
      off();
      window.clearInterval(timer);
    };
  }, []);
  const togglePause = () => {
    pausedRef.current = !paused;
    if (paused) counted.current.missed = 0;
    setPaused(!paused);
  };

  return (
    <section aria-labelledby="feed-title">
      <h1 id="feed-title">Live feed</h1>
      <div class="filters">
        <button type="button" aria-pressed={paused} onClick={togglePause}>
          {paused ? 'Resume' : 'Pause'}
        </button>
        <label>
          Customer
          <select value={customer} onChange={(e) => setCustomer(e.currentTarget.value)}>
            <option value="">All visible customers</option>
            {customers.map((c) => (
              <option key={c.groupId} value={c.groupId}>
                {c.name}
              </option>
            ))}
          </select>
        </label>
        <span class="counter" aria-live="polite">
          {total} events received{paused ? `, ${missed} while paused` : ''}
        </span>
      </div>
      <table class="feed">
        <caption>Newest first; check-ins of one device within a moment are shown as one row with a count.</caption>
        <thead>
          <tr>
            <th scope="col">Time</th>
            <th scope="col">Event</th>
            <th scope="col">Device</th>
            <th scope="col">Details</th>
          </tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.key} class={`kind-${r.kind}`} data-device={r.deviceId ?? ''} data-kind={r.kind}>
              <td>{new Date(r.at).toLocaleTimeString()}</td>
              <td>
                <span class={`badge kind-${r.kind}`}>{r.kind}</span>
                {r.count > 1 ? ` ×${r.count}` : ''}
              </td>
              <td>
                {r.hostname ?? '(unknown)'} <span class="id">{r.deviceId ?? ''}</span>
              </td>
              <td>{[r.detail, r.address].filter(Boolean).join(' · ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
