/**
 * Managed customers: status and device counts by presence, with setup and
 * skip for admins. A setup's secrets (install command, the customer admin's
 * password) are shown once, here.
 */
import { useEffect, useState } from 'preact/hooks';
import { api, type Customer } from '../api.js';

interface SetupAnswer {
  readonly customer: Customer;
  readonly token: { readonly agentCommand: string; readonly expiresAt: string };
  readonly user: { readonly username: string; readonly password?: string; readonly existed?: true };
}

export function CustomersView({ admin }: { admin: boolean }) {
  const [customers, setCustomers] = useState<readonly Customer[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [setup, setSetup] = useState<SetupAnswer | null>(null);
  const load = () => api<{ customers: Customer[] }>('GET', '/api/v1/customers').then((r) => setCustomers(r.customers), (e: Error) => setError(e.message));
  useEffect(() => void load(), []);
  const act = async (path: string, body: unknown) => {
    try {
      const res = await api<SetupAnswer | { customers: Customer[] }>('POST', path, body);
      if ('token' in res) setSetup(res);
      setError(null);
    } catch (e) {
      setError((e as Error).message);
    }
    void load();
  };
  return (
    <section aria-labelledby="customers-title">
      <h1 id="customers-title">Managed customers</h1>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {setup && (
        <div class="secret" role="status">
          <h2>{setup.customer.name} is set up</h2>
          <p>Install command (the token expires {new Date(setup.token.expiresAt).toLocaleDateString()}); shown once:</p>
          <pre>{setup.token.agentCommand}</pre>
          {setup.user.password ? (
            <p>
              Customer admin: <code>{setup.user.username}</code> with password <code>{setup.user.password}</code> (shown once)
            </p>
          ) : (
            <p>Customer admin {setup.user.username} already existed.</p>
          )}
          <button type="button" onClick={() => setSetup(null)}>
            Done
          </button>
        </div>
      )}
      {admin && (
        <p>
          <button type="button" onClick={() => act('/api/v1/customers/skip', { allNew: true })}>
            Skip setup of all new customers
          </button>
        </p>
      )}
      <table>
        <caption>{customers.length} customers</caption>
        <thead>
          <tr>
            <th scope="col">Customer</th>
            <th scope="col">Status</th>
            <th scope="col">Online</th>
            <th scope="col">Late</th>
            <th scope="col">Offline</th>
            <th scope="col">Never connected</th>
            <th scope="col">Total</th>
            {admin && <th scope="col">Actions</th>}
          </tr>
        </thead>
        <tbody>
          {customers.map((c) => (
            <tr key={c.groupId} data-customer={c.groupId}>
              <th scope="row">
                <a href={`#/devices?group=${encodeURIComponent(c.groupId)}`}>{c.name}</a>
                <span class="id">{c.groupPath}</span>
              </th>
              <td>
                <span class={`badge customer-${c.status}`}>{c.status.replace(/_/g, ' ')}</span>
                {c.upstreamStatus !== 'Active' && <span class="note">{c.upstreamStatus}</span>}
              </td>
              <td>{c.devices.online}</td>
              <td>{c.devices.late}</td>
              <td>{c.devices.offline}</td>
              <td>{c.devices.never_connected}</td>
              <td>{c.devices.total}</td>
              {admin && (
                <td class="actions">
                  <button type="button" disabled={c.status === 'unlinked'} onClick={() => act('/api/v1/customers/setup', { customer: c.groupId })}>
                    Set up
                  </button>
                  <button type="button" disabled={c.status !== 'not_set_up'} onClick={() => act('/api/v1/customers/skip', { customer: c.groupId })}>
                    Skip
                  </button>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </section>
  );
}
