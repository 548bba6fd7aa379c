/**
 * Enrollment tokens and installers for a group, and API tokens for
 * automation. Secrets are shown once, with the install command and a
 * downloadable install script made in the page (nothing is fetched).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, when, type Group } from '../api.js';

interface Token {
  readonly id: string;
  readonly groupPath: string | null;
  readonly expiresAt: string | null;
  readonly uses: number;
  readonly maxUses: number | null;
  readonly revokedAt: string | null;
  readonly note: string | null;
}
interface ApiTokenRow {
  readonly id: string;
  readonly name: string;
  readonly scope: string;
  readonly groupPath: string | null;
  readonly createdAt: string;
  readonly revokedAt: string | null;
}

function installerUrl(command: string): string {
  const script = `#!/bin/sh\n# Rollcall agent installer: enrolls this computer and starts the agent.\nset -e\n${command}\n`;
  return URL.createObjectURL(new Blob([script], { type: 'text/x-shellscript' }));
}

export function EnrollmentView({ admin }: { admin: boolean }) {
  const [groups, setGroups] = useState<readonly Group[]>([]);
  const [tokens, setTokens] = useState<readonly Token[]>([]);
  const [apiTokens, setApiTokens] = useState<readonly ApiTokenRow[]>([]);
  const [group, setGroup] = useState('');
  const [days, setDays] = useState('7');
  const [uses, setUses] = useState('');
  const [note, setNote] = useState('');
  const [made, setMade] = useState<{ token: string; agentCommand: string; url: string } | null>(null);
  const [apiName, setApiName] = useState('');
  const [apiGroup, setApiGroup] = useState('');
  const [apiMade, setApiMade] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const fail = (e: Error) => setError(e.message);
  const load = () => {
    api<{ tokens: Token[] }>('GET', '/api/v1/enrollment-tokens').then((r) => setTokens(r.tokens), fail);
    api<{ tokens: ApiTokenRow[] }>('GET', '/api/v1/api-tokens').then((r) => setApiTokens(r.tokens), fail);
  };
  useEffect(() => {
    api<{ groups: Group[] }>('GET', '/api/v1/groups').then((r) => {
      setGroups(r.groups);
      setGroup(r.groups.find((g) => g.kind === 'static')?.id ?? r.groups[0]?.id ?? '');
    }, fail);
    load();
  }, []);
  const create = async (e: Event) => {
    e.preventDefault();
    try {
      const body = { group, ttlSec: Math.round(Number(days) * 86_400), ...(uses ? { maxUses: Number(uses) } : {}), ...(note ? { note } : {}) };
      const t = await api<{ token: string; agentCommand: string }>('POST', '/api/v1/enrollment-tokens', body);
      setMade({ ...t, url: installerUrl(t.agentCommand) });
      setError(null);
      load();
    } catch (err) {
      fail(err as Error);
    }
  };
  const createApi = async (e: Event) => {
    e.preventDefault();
    try {
      const t = await api<{ token: string }>('POST', '/api/v1/api-tokens', { name: apiName, ...(apiGroup ? { group: apiGroup } : {}) });
      setApiMade(t.token);
      setError(null);
      load();
    } catch (err) {
      fail(err as Error);
    }
  };
  const revoke = (path: string) => api('POST', path, {}).then(load, fail);
  return (
    <section aria-labelledby="enroll-title">
      <h1 id="enroll-title">Enrollment and tokens</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      <form class="inline" onSubmit={create} aria-label="New enrollment token">
        <label>
          Group
          <select value={group} onChange={(e) => setGroup(e.currentTarget.value)} required>
            {groups.map((g) => (
              <option key={g.id} value={g.id}>
                {g.path}
              </option>
            ))}
          </select>
        </label>
        <label>
          Valid for (days)
          <input type="number" min="1" max="3650" value={days} onInput={(e) => setDays(e.currentTarget.value)} required />
        </label>
        <label>
          Max uses
          <input type="number" min="1" placeholder="unlimited" value={uses} onInput={(e) => setUses(e.currentTarget.value)} />
        </label>
        <label>
          Note
          <input maxLength={256} value={note} onInput={(e) => setNote(e.currentTarget.value)} />
        </label>
        <button type="submit">Create token and installer</button>
      </form>
      {made && (
        <div class="secret" role="status">
          <p>Token (shown once):</p>
          <pre>{made.token}</pre>
          <p>On the computer to enroll:</p>
          <pre>{made.agentCommand}</pre>
          <a href={made.url} download="rollcall-install.sh">
            Download installer script
          </a>{' '}
          <button type="button" onClick={() => setMade(null)}>
            Done
          </button>
        </div>
      )}
      <table>
        <caption>Enrollment tokens</caption>
        <thead>
          <tr>
            <th scope="col">Token</th>
            <th scope="col">Group</th>
            <th scope="col">Expires</th>
            <th scope="col">Uses</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {tokens.map((t) => (
            <tr key={t.id} class={t.revokedAt ? 'revoked' : ''}>
              <th scope="row">
                {t.id} <span class="id">{t.note ?? ''}</span>
              </th>
              <td>{t.groupPath ?? '(deleted group: Lost & found)'}</td>
              <td>{when(t.expiresAt)}</td>
              <td>
                {t.uses}/{t.maxUses ?? '∞'}
              </td>
              <td>
                {t.revokedAt ? (
                  `revoked ${when(t.revokedAt)}`
                ) : (
                  <button type="button" class="danger" onClick={() => revoke(`/api/v1/enrollment-tokens/${t.id}/revoke`)}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>API tokens for automation</h2>
      <form class="inline" onSubmit={createApi} aria-label="New API token">
        <label>
          Name
          <input value={apiName} required maxLength={128} onInput={(e) => setApiName(e.currentTarget.value)} />
        </label>
        <label>
          Scope
          <select value={apiGroup} onChange={(e) => setApiGroup(e.currentTarget.value)}>
            <option value="">{admin ? 'Admin (everything)' : 'My customer'}</option>
            {groups
              .filter((g) => g.kind !== 'root')
              .map((g) => (
                <option key={g.id} value={g.id}>
                  {g.path}
                </option>
              ))}
          </select>
        </label>
        <button type="submit">Create API token</button>
      </form>
      {apiMade && (
        <div class="secret" role="status">
          <p>API token (shown once): send it as Authorization: Bearer …</p>
          <pre>{apiMade}</pre>
          <button type="button" onClick={() => setApiMade(null)}>
            Done
          </button>
        </div>
      )}
      <table>
        <caption>API tokens</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Scope</th>
            <th scope="col">Created</th>
            <th scope="col">Actions</th>
          </tr>
        </thead>
        <tbody>
          {apiTokens.map((t) => (
            <tr key={t.id} class={t.revokedAt ? 'revoked' : ''}>
              <th scope="row">
                {t.name} <span class="id">{t.id}</span>
              </th>
              <td>{t.scope === 'admin' ? 'admin' : t.groupPath}</td>
              <td>{when(t.createdAt)}</td>
              <td>
                {t.revokedAt ? (
                  `revoked ${when(t.revokedAt)}`
                ) : (
                  <button type="button" class="danger" onClick={() => revoke(`/api/v1/api-tokens/${t.id}/revoke`)}>
                    Revoke
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
