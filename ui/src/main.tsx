/**
 * The Rollcall web console: login, then the views (devices, live feed,
 * groups, customers, health, enrollment, sync) under hash routes. All data
 * comes from the console API of the same server; nothing from the network.
 */
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, setCsrf, type Me } from './api.js';
import { FeedHub } from './feed-hub.js';
import { DevicesView } from './views/devices.js';
import { FeedView } from './views/feed.js';
import { GroupsView } from './views/groups.js';
import { CustomersView } from './views/customers.js';
import { HealthView } from './views/health.js';
import { EnrollmentView } from './views/enrollment.js';
import { SyncView } from './views/sync.js';
import { UsersView } from './views/users.js';

const hub = new FeedHub();

const VIEWS = [
  { id: 'devices', label: 'Devices', admin: false },
  { id: 'feed', label: 'Live feed', admin: false },
  { id: 'groups', label: 'Groups', admin: false },
  { id: 'customers', label: 'Managed customers', admin: false },
  { id: 'health', label: 'Health', admin: false },
  { id: 'enrollment', label: 'Enrollment & tokens', admin: false },
  { id: 'sync', label: 'MSP sync', admin: true },
  { id: 'users', label: 'Account', admin: false },
] as const;

/** The route: `#/view?param=value`. */
function parseHash(): { view: string; params: URLSearchParams } {
  const raw = location.hash.replace(/^#\/?/, '');
  const [view, q] = raw.split('?');
  return { view: view || 'devices', params: new URLSearchParams(q ?? '') };
}

function Login({ onDone }: { onDone: (me: Me) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onDone(await api<Me>('POST', '/api/v1/session', { username, password }));
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="login">
      <h1>Rollcall console</h1>
      <form onSubmit={submit} aria-describedby={error ? 'login-error' : undefined}>
        <label for="login-user">User name</label>
        <input id="login-user" name="username" autocomplete="username" required value={username} onInput={(e) => setUsername(e.currentTarget.value)} />
        <label for="login-password">Password</label>
        <input id="login-password" name="password" type="password" autocomplete="current-password" required value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        <button type="submit" disabled={busy}>
          Log in
        </button>
        {error && (
          <p id="login-error" class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

function App() {
  const [me, setMe] = useState<Me | null | undefined>(undefined);
  const [route, setRoute] = useState(parseHash());
  const [feedState, setFeedState] = useState(hub.state);
  useEffect(() => {
    const onHash = () => setRoute(parseHash());
    window.addEventListener('hashchange', onHash);
    hub.onState = () => setFeedState(hub.state);
    api<Me>('GET', '/api/v1/session').then(
      (m) => setMe(m),
      () => setMe(null),
    );
    return () => window.removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    setCsrf(me ? me.csrfToken : null);
    if (me) hub.open(hub.filter);
    else hub.close();
  }, [me]);
  if (me === undefined) return <p class="loading">Loading…</p>;
  if (me === null) return <Login onDone={setMe} />;
  const admin = me.user.role === 'admin';
  const logout = async () => {
    await api('DELETE', '/api/v1/session').catch(() => undefined);
    setMe(null);
  };
  const views = VIEWS.filter((v) => admin || !v.admin);
  const current = views.find((v) => v.id === route.view) ?? views[0]!;
  return (
    <div class="shell">
      <header>
        <button type="button" class="skip" onClick={() => document.getElementById('main')?.focus()}>
          Skip to content
        </button>
        <span class="brand">Rollcall</span>
        <nav aria-label="Views">
          <ul>
            {views.map((v) => (
              <li key={v.id}>
                <a href={`#/${v.id}`} aria-current={v.id === current.id ? 'page' : undefined}>
                  {v.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span class="who">
          <span class={`feed-state ${feedState}`} title="live feed connection">
            live: {feedState}
          </span>{' '}
          {me.user.username}
          {me.user.homeGroupPath ? ` (${me.user.homeGroupPath})` : ''}{' '}
          <button type="button" onClick={logout}>
            Log out
          </button>
        </span>
      </header>
      <main id="main" tabIndex={-1}>
        {current.id === 'devices' && <DevicesView hub={hub} params={route.params} admin={admin} />}
        {current.id === 'feed' && <FeedView hub={hub} />}
        {current.id === 'groups' && <GroupsView admin={admin} />}
        {current.id === 'customers' && <CustomersView admin={admin} />}
        {current.id === 'health' && <HealthView />}
        {current.id === 'enrollment' && <EnrollmentView admin={admin} />}
        {current.id === 'sync' && <SyncView />}
        {current.id === 'users' && <UsersView admin={admin} />}
      </main>
    </div>
  );
}

render(<App />, document.getElementById('app')!);
