/**
 * Health: each listener port with its expected and observed exposure, the
 * ports × customers visibility matrix with probable causes, certificate
 * expiry and open alerts (the report of GET /api/v1/health).
 */
import { useEffect, useState } from 'preact/hooks';
import { api, when } from '../api.js';

interface Report {
  readonly generatedAt: string;
  readonly ports: readonly {
    role: string;
    port: number;
    listening: boolean;
    expectedExposure: string;
    required: boolean;
    observed: { customersReaching: number; customersFailing: number; customersPartlyFailing: number; failingSince: string | null };
    serverWide: { message: string; remedy: string | null } | null;
    flag: { message: string } | null;
  }[];
  readonly certificates: readonly { name: string; subject: string; notAfter: string; daysLeft: number; expiringSoon: boolean }[];
  readonly agentCertificatesExpiring: number;
  readonly customers: readonly {
    groupId: string;
    name: string;
    dark: boolean;
    devices: Record<string, number>;
    unreachable: readonly { port: number; role: string; cause: string; message: string; remedy: string | null; since: string }[];
    reachesRestricted: readonly { port: number }[];
  }[];
  readonly alerts: readonly { kind: string; subject: string; message: string; raisedAt: string }[];
}

export function HealthView() {
  const [report, setReport] = useState<Report | null>(null);
  const [error, setError] = useState<string | null>(null);
  const load = () => api<Report>('GET', '/api/v1/health').then(setReport, (e: Error) => setError(e.message));
  useEffect(() => void load(), []);
  if (error)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  if (!report) return <p class="loading">Loading the health report…</p>;
  return (
    <section aria-labelledby="health-title">
      <h1 id="health-title">Health</h1>
      <p>
        Report of {when(report.generatedAt)}{' '}
        <button type="button" onClick={() => void load()}>
          Refresh
        </button>
      </p>
      <table>
        <caption>Ports</caption>
        <thead>
          <tr>
            <th scope="col">Port</th>
            <th scope="col">Listening</th>
            <th scope="col">Expected exposure</th>
            <th scope="col">Customers reaching / failing / partly</th>
            <th scope="col">Problem</th>
          </tr>
        </thead>
        <tbody>
          {report.ports.map((p) => (
            <tr key={p.port} class={p.serverWide || p.flag ? 'band-error' : ''}>
              <th scope="row">
                {p.role} {p.port}
                {p.required ? ' (required)' : ''}
              </th>
              <td>{p.listening ? 'yes' : 'NO'}</td>
              <td>{p.expectedExposure}</td>
              <td>
                {p.observed.customersReaching} / {p.observed.customersFailing} / {p.observed.customersPartlyFailing}
              </td>
              <td>{[p.serverWide?.message, p.serverWide?.remedy, p.flag?.message].filter(Boolean).join(' — ') || '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <table class="matrix">
        <caption>Visibility: ports × customers (probable cause where a port is not reached)</caption>
        <thead>
          <tr>
            <th scope="col">Customer</th>
            {report.ports.map((p) => (
              <th scope="col" key={p.port}>
                {p.role} {p.port}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {report.customers.map((c) => (
            <tr key={c.groupId} class={c.dark ? 'band-error' : ''}>
              <th scope="row">
                {c.name}
                {c.dark ? ' (dark)' : ''}
              </th>
              {report.ports.map((p) => {
                const u = c.unreachable.find((x) => x.port === p.port);
                const restricted = c.reachesRestricted.some((x) => x.port === p.port);
                return (
                  <td key={p.port} class={u ? 'band-error' : restricted ? 'band-warning' : 'band-recent'} title={u ? `${u.message}${u.remedy ? ` — ${u.remedy}` : ''}` : undefined}>
                    {u ? `✗ ${u.cause}` : restricted ? '! reaches restricted port' : '✓'}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>Certificates ({report.agentCertificatesExpiring} agent certificates expire within 30 days)</caption>
        <thead>
          <tr>
            <th scope="col">Certificate</th>
            <th scope="col">Expires</th>
            <th scope="col">Days left</th>
          </tr>
        </thead>
        <tbody>
          {report.certificates.map((c) => (
            <tr key={c.name} class={c.expiringSoon ? 'band-warning' : ''}>
              <th scope="row">
                {c.name} <span class="id">{c.subject}</span>
              </th>
              <td>{when(c.notAfter)}</td>
              <td>{c.daysLeft}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Open alerts</h2>
      {report.alerts.length === 0 ? (
        <p>None.</p>
      ) : (
        <ul>
          {report.alerts.map((a) => (
            <li key={`${a.kind}:${a.subject}`}>
              <strong>{a.kind}</strong> {a.message} <span class="id">since {when(a.raisedAt)}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}
