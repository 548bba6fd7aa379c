/**
 * Your account (change your password) and, for admins, the console users:
 * make admins or customer admins, disable and enable them.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, setCsrf, when, type Group } from '../api.js';

interface UserRow {
  readonly id: string;
  readonly username: string;
  readonly role: string;
  readonly homeGroupPath: string | null;
  readonly createdAt: string;
  readonly disabledAt: string | null;
}

export function UsersView({ admin }: { admin: boolean }) {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [users, setUsers] = useState<readonly UserRow[]>([]);
  const [groups, setGroups] = useState<readonly Group[]>([]);
  const [name, setName] = useState('');
  const [role, setRole] = useState<'admin' | 'customer_admin'>('customer_admin');
  const [group, setGroup] = useState('');
  const [made, setMade] = useState<{ username: string; password?: string } | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const fail = (e: Error) => setMessage(e.message);
  const load = () => {
    if (!admin) return;
    api<{ users: UserRow[] }>('GET', '/api/v1/users').then((r) => setUsers(r.users), fail);
    api<{ groups: Group[] }>('GET', '/api/v1/groups').then((r) => setGroups(r.groups), fail);
  };
  useEffect(load, []);
  const change = async (e: Event) => {
    e.preventDefault();
    try {
      const r = await api<{ csrfToken: string }>('POST', '/api/v1/session/password', { current, password: next });
      setCsrf(r.csrfToken);
      setCurrent('');
      setNext('');
      setMessage('Password changed; your other sessions were ended.');
    } catch (err) {
      fail(err as Error);
    }
  };
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      setMade(await api<{ username: string; password?: string }>('POST', '/api/v1/users', { username: name, role, ...(role === 'customer_admin' ? { group } : {}) }));
      setName('');
      load();
    } catch (err) {
      fail(err as Error);
    }
  };
  const toggle = (u: UserRow) => api('POST', `/api/v1/users/${u.id}/${u.disabledAt ? 'enable' : 'disable'}`, {}).then(load, fail);
  return (
    <section aria-labelledby="users-title">
      <h1 id="users-title">Account{admin ? ' and users' : ''}</h1>
      {message && <p role="status">{message}</p>}
      <form class="inline" onSubmit={change} aria-label="Change your password">
        <label>
          Current password
          <input type="password" autocomplete="current-password" required value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
        </label>
        <label>
          New password (12 or more characters)
          <input type="password" autocomplete="new-password" minLength={12} required value={next} onInput={(e) => setNext(e.currentTarget.value)} />
        </label>
        <button type="submit">Change password</button>
      </form>
      {admin && (
        <>
          <h2>Users</h2>
          <form class="inline" onSubmit={create} aria-label="New user">
            <label>
              User name
              <input required pattern="[a-z0-9][a-z0-9._\-]{1,63}" value={name} onInput={(e) => setName(e.currentTarget.value)} />
            </label>
            <label>
              Role
              <select value={role} onChange={(e) => setRole(e.currentTarget.value as typeof role)}>
                <option value="customer_admin">Customer admin (one subtree)</option>
                <option value="admin">Admin (everything)</option>
              </select>
            </label>
            {role === 'customer_admin' && (
              <label>
                Home group
                <select required value={group} onChange={(e) => setGroup(e.currentTarget.value)}>
                  <option value="">Choose…</option>
                  {groups
                    .filter((g) => g.kind === 'static')
                    .map((g) => (
                      <option key={g.id} value={g.id}>
                        {g.path}
                      </option>
                    ))}
                </select>
              </label>
            )}
            <button type="submit">Create user</button>
          </form>
          {made && (
            <div class="secret" role="status">
              <p>
                User <code>{made.username}</code>
                {made.password ? (
                  <>
                    {' '}
                    with password <code>{made.password}</code> (shown once)
                  </>
                ) : null}
              </p>
              <button type="button" onClick={() => setMade(null)}>
                Done
              </button>
            </div>
          )}
          <table>
            <caption>{users.length} users</caption>
            <thead>
              <tr>
                <th scope="col">User</th>
                <th scope="col">Role</th>
                <th scope="col">Home group</th>
                <th scope="col">Created</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {users.map((u) => (
                <tr key={u.id} class={u.disabledAt ? 'revoked' : ''}>
                  <th scope="row">{u.username}</th>
                  <td>{u.role.replace('_', ' ')}</td>
                  <td>{u.homeGroupPath ?? '—'}</td>
                  <td>{when(u.createdAt)}</td>
                  <td>
                    <button type="button" class={u.disabledAt ? '' : 'danger'} onClick={() => toggle(u)}>
                      {u.disabledAt ? 'Enable' : 'Disable'}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
