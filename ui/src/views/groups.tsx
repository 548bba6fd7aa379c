/**
 * The static group tree: the MSP structure as synced, customers with their
 * status icon, Lost & found, and devices per group (directly and in the
 * whole subtree). A group links to its devices.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, type Customer, type Group } from '../api.js';

interface Account {
  readonly account: { readonly rootGroupId: string; readonly name: string };
  readonly state: string;
}

const STATUS_ICON: Record<Customer['status'], { icon: string; label: string }> = {
  not_set_up: { icon: '○', label: 'customer not set up' },
  normal: { icon: '●', label: 'customer set up' },
  unlinked: { icon: '⚠', label: 'customer unlinked upstream' },
};

export function GroupsView({ admin }: { admin: boolean }) {
  const [groups, setGroups] = useState<readonly Group[]>([]);
  const [customers, setCustomers] = useState<ReadonlyMap<string, Customer>>(new Map());
  const [roots, setRoots] = useState<ReadonlyMap<string, Account>>(new Map());
  const [error, setError] = useState<string | null>(null);
  const [newPath, setNewPath] = useState('');

  const load = () => {
    api<{ groups: Group[] }>('GET', '/api/v1/groups').then((r) => setGroups(r.groups), (e: Error) => setError(e.message));
    api<{ customers: Customer[] }>('GET', '/api/v1/customers').then((r) => setCustomers(new Map(r.customers.map((c) => [c.groupId, c]))), () => undefined);
    if (admin) api<{ accounts: Account[] }>('GET', '/api/v1/msp/accounts').then((r) => setRoots(new Map(r.accounts.map((a) => [a.account.rootGroupId, a]))), () => undefined);
  };
  useEffect(load, []);

  const children = new Map<string | null, Group[]>();
  const ids = new Set(groups.map((g) => g.id));
  for (const g of groups) {
    const parent = g.parentId !== null && ids.has(g.parentId) ? g.parentId : null;
    children.set(parent, [...(children.get(parent) ?? []), g]);
  }
  const subtotal = (id: string): number => (groups.find((g) => g.id === id)?.devices ?? 0) + (children.get(id) ?? []).reduce((a, c) => a + subtotal(c.id), 0);
  const node = (g: Group) => {
    const c = customers.get(g.id);
    const acct = roots.get(g.id);
    const kids = children.get(g.id) ?? [];
    return (
      <li key={g.id} data-group={g.id}>
        <a href={`#/devices?group=${encodeURIComponent(g.id)}`}>{g.name}</a>
        {g.kind === 'lost_found' && <span class="badge">built in</span>}
        {acct && <span class="badge msp">MSP account ({acct.state})</span>}
        {c && (
          <span class={`badge customer-${c.status}`} role="img" aria-label={STATUS_ICON[c.status].label} title={STATUS_ICON[c.status].label}>
            {STATUS_ICON[c.status].icon} {c.status.replace(/_/g, ' ')}
          </span>
        )}
        <span class="count">
          {g.devices} here, {subtotal(g.id)} in all
        </span>
        {kids.length > 0 && <ul>{kids.map(node)}</ul>}
      </li>
    );
  };
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      await api('POST', '/api/v1/groups', { path: newPath });
      setNewPath('');
      load();
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section aria-labelledby="groups-title">
      <h1 id="groups-title">Groups</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <ul class="tree" aria-label="Static groups">
        {(children.get(null) ?? []).map(node)}
      </ul>
      {admin && (
        <form class="inline" onSubmit={create}>
          <label>
            New group path
            <input value={newPath} placeholder="Customers/Example" required onInput={(e) => setNewPath(e.currentTarget.value)} />
          </label>
          <button type="submit">Create group</button>
        </form>
      )}
    </section>
  );
}
