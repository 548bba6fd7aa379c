/**
 * Devices: one server-side page at a time (filters, sort and paging are
 * done by the server), coloured by the model's "last connected" bands, with
 * revoke and move. The page re-reads itself (at most once a second) when
 * the live feed reports connects, disconnects or rejects.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, query, when, type Device, type Group } from '../api.js';
import type { FeedHub } from '../feed-hub.js';

interface Page {
  readonly devices: readonly Device[];
  readonly total: number;
}

const PAGE = 50;
const BAND_LABEL: Record<string, string> = {
  recent: 'connected within 10 min',
  ok: 'within 2 days',
  warning: '2-14 days ago',
  error: 'over 14 days ago',
  never: 'never connected',
};

export function DevicesView({ hub, params, admin }: { hub: FeedHub; params: URLSearchParams; admin: boolean }) {
  const [groups, setGroups] = useState<readonly Group[]>([]);
  const [group, setGroup] = useState(params.get('group') ?? '');
  const [status, setStatus] = useState('');
  const [band, setBand] = useState('');
  const [text, setText] = useState('');
  const [typed, setTyped] = useState('');
  const [sort, setSort] = useState<'hostname' | 'lastContact' | 'enrolledAt'>('hostname');
  const [desc, setDesc] = useState(false);
  const [offset, setOffset] = useState(0);
  const [page, setPage] = useState<Page | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [moveTo, setMoveTo] = useState<Record<string, string>>({});
  const seq = useRef(0);
  const refreshTimer = useRef<number | null>(null);

  const load = async () => {
    const mine = ++seq.current;
    try {
      const p = await api<Page>('GET', `/api/v1/devices${query({ group, status, band, q: text, sort, order: desc ? 'desc' : 'asc', limit: PAGE, offset })}`);
      if (mine === seq.current) {
        setPage(p);
        setError(null);
      }
    } catch (err) {
      if (mine === seq.current) setError((err as Error).message);
    }
  };
  useEffect(() => {
    api<{ groups: Group[] }>('GET', '/api/v1/groups').then((r) => setGroups(r.groups), (err: Error) => setError(err.message));
  }, []);
  useEffect(() => {
    const t = window.setTimeout(() => setText(typed.trim()), 250);
    return () => window.clearTimeout(t);
  }, [typed]);
  useEffect(() => setOffset(0), [group, status, band, text, sort, desc]);
  useEffect(() => {
    void load();
  }, [group, status, band, text, sort, desc, offset]);
  useEffect(
    () =>
      hub.subscribe((batch) => {
        if (!batch.items.some((i) => i.kind !== 'checkin') && batch.more === 0) return;
        if (refreshTimer.current !== null) return;
        refreshTimer.current = window.setTimeout(() => {
          refreshTimer.current = null;
          void load();
        }, 300);
      }),
    [group, status, band, text, sort, desc, offset],
  );

  const sortBy = (key: typeof sort) => {
    if (key === sort) setDesc(!desc);
    else {
      setSort(key);
      setDesc(key === 'lastContact');
    }
  };
  const sortMark = (key: typeof sort) => (sort === key ? (desc ? 'descending' : 'ascending') : 'none');
  const revoke = async (d: Device) => {
    if (!window.confirm(`Revoke ${d.hostname}? Its agent can no longer connect until reinstalled.`)) return;
    await api('POST', `/api/v1/devices/${encodeURIComponent(d.id)}/revoke`, {}).catch((err: Error) => setError(err.message));
    void load();
  };
  const move = async (d: Device) => {
    const target = moveTo[d.id];
    if (!target) return;
    await api('POST', `/api/v1/devices/${encodeURIComponent(d.id)}/move`, { group: target }).catch((err: Error) => setError(err.message));
    void load();
  };
  const holders = groups.filter((g) => g.kind !== 'root' || admin);

  return (
    <section aria-labelledby="devices-title">
      <h1 id="devices-title">Devices</h1>
      <form class="filters" onSubmit={(e) => e.preventDefault()} role="search" aria-label="Filter devices">
        <label>
          Group
          <select value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
            <option value="">All visible groups</option>
            {groups.map((g) => (
              <option key={g.id} value={g.id}>
                {g.path}
              </option>
            ))}
          </select>
        </label>
        <label>
          Status
          <select value={status} onChange={(e) => setStatus(e.currentTarget.value)}>
            <option value="">Any</option>
            <option value="online">Online now</option>
            <option value="offline">Not connected</option>
            <option value="never_connected">Never connected</option>
            <option value="revoked">Revoked</option>
          </select>
        </label>
        <label>
          Last connected
          <select value={band} onChange={(e) => setBand(e.currentTarget.value)}>
            <option value="">Any time</option>
            {Object.entries(BAND_LABEL).map(([k, v]) => (
              <option key={k} value={k}>
                {v}
              </option>
            ))}
          </select>
        </label>
        <label>
          Search
          <input type="search" placeholder="host name, address or id" value={typed} onInput={(e) => setTyped(e.currentTarget.value)} />
        </label>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <table class="devices">
        <caption>
          {page ? `${page.total === 0 ? 0 : offset + 1}–${Math.min(offset + PAGE, page.total)} of ${page.total} devices` : 'Loading devices…'}
        </caption>
        <thead>
          <tr>
            <th scope="col" aria-sort={sortMark('hostname')}>
              <button type="button" onClick={() => sortBy('hostname')}>
                Host name
              </button>
            </th>
            <th scope="col">Status</th>
            <th scope="col" aria-sort={sortMark('lastContact')}>
              <button type="button" onClick={() => sortBy('lastContact')}>
                Last connected
              </button>
            </th>
            <th scope="col">Group</th>
            <th scope="col">Address</th>
            <th scope="col">Agent</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {page?.devices.map((d) => (
            <tr key={d.id} class={`band-${d.ageBand} status-${d.status}`} data-device={d.id}>
              <th scope="row">
                <span class="host">{d.hostname}</span>
                <span class="id">{d.id}</span>
                {d.placementReason && <span class="note">{d.placementReason}</span>}
              </th>
              <td>
                <span class={`badge status-${d.status}`} data-status={d.status}>
                  {d.status.replace('_', ' ')}
                </span>
              </td>
              <td class={`band band-${d.ageBand}`} title={BAND_LABEL[d.ageBand]}>
                {when(d.lastContactAt)}
              </td>
              <td>{d.groupPath}</td>
              <td>{d.address ?? '—'}</td>
              <td>{[d.agentVersion, d.os].filter(Boolean).join(' · ') || '—'}</td>
              <td class="actions">
                <label class="sr-only" for={`move-${d.id}`}>
                  Move {d.hostname} to
                </label>
                <select id={`move-${d.id}`} value={moveTo[d.id] ?? ''} onChange={(e) => setMoveTo({ ...moveTo, [d.id]: e.currentTarget.value })}>
                  <option value="">Move to…</option>
                  {holders
                    .filter((g) => g.id !== d.groupId)
                    .map((g) => (
                      <option key={g.id} value={g.id}>
                        {g.path}
                      </option>
                    ))}
                </select>
                <button type="button" disabled={!moveTo[d.id]} onClick={() => move(d)}>
                  Move
                </button>
                <button type="button" class="danger" disabled={d.status === 'revoked'} onClick={() => revoke(d)}>
                  Revoke
                </button>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        <button type="button" disabled={offset === 0} onClick={() => setOffset(Math.max(0, offset - PAGE))}>
          Previous page
        </button>
        <button type="button" disabled={!page || offset + PAGE >= page.total} onClick={() => setOffset(offset + PAGE)}>
          Next page
        </button>
      </nav>
    </section>
  );
}
