/**
 * MSP sync: each linked account's state (synchronized, ongoing,
 * disconnected, failed with the reason), its last run, and "sync now".
 */
import { useEffect, useState } from 'preact/hooks';
import { api, when } from '../api.js';

interface AccountStatus {
  readonly account: { readonly id: string; readonly name: string; readonly portal: string; readonly source: string; readonly linked: boolean };
  readonly state: string;
  readonly progress: { readonly phase: string; readonly fetched: number } | null;
  readonly lastRun: { readonly outcome: string; readonly reason: string | null; readonly finishedAt: number; readonly added: number; readonly unlinked: number } | null;
  readonly nextSyncAt: number | null;
}

export function SyncView() {
  const [accounts, setAccounts] = useState<readonly AccountStatus[]>([]);
  const [busy, setBusy] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const load = () => api<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts').then((r) => setAccounts(r.accounts), (e: Error) => setMessage(e.message));
  useEffect(() => void load(), []);
  const syncNow = async (id: string) => {
    setBusy(id);
    setMessage(null);
    try {
      const { run } = await api<{ run: { outcome: string; reason: string | null; added: number } }>('POST', '/api/v1/msp/sync', { account: id });
      setMessage(run.outcome === 'succeeded' ? `Sync finished: ${run.added} new.` : `Sync failed: ${run.reason ?? 'unknown reason'}`);
    } catch (e) {
      setMessage((e as Error).message);
    } finally {
      setBusy(null);
      void load();
    }
  };
  return (
    <section aria-labelledby="sync-title">
      <h1 id="sync-title">MSP sync</h1>
      {message && <p role="status">{message}</p>}
      {accounts.length === 0 && <p>No MSP account is linked (use "rollcall msp link").</p>}
      <table>
        <caption>Linked accounts</caption>
        <thead>
          <tr>
            <th scope="col">Account</th>
            <th scope="col">State</th>
            <th scope="col">Last run</th>
            <th scope="col">Next sync</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {accounts.map((a) => (
            <tr key={a.account.id} class={a.state === 'failed' ? 'band-error' : a.state === 'disconnected' ? 'band-warning' : ''}>
              <th scope="row">
                {a.account.name} <span class="id">{`${a.account.portal} · ${a.account.source}`}</span>
              </th>
              <td data-state={a.state}>
                {a.state}
                {a.progress ? ` (${a.progress.phase}, ${a.progress.fetched} fetched)` : ''}
              </td>
              <td>{a.lastRun ? `${a.lastRun.outcome} ${when(a.lastRun.finishedAt)}${a.lastRun.reason ? `: ${a.lastRun.reason}` : ''}` : '—'}</td>
              <td>{when(a.nextSyncAt)}</td>
              <td>
                <button type="button" disabled={busy !== null || !a.account.linked} onClick={() => syncNow(a.account.id)}>
                  {busy === a.account.id ? 'Syncing…' : 'Sync now'}
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
