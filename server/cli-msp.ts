/**
 * Admin commands of the MSP integration: `rollcall msp …`, `rollcall
 * customers …` and `rollcall instance …`. They talk to the console API.
 */
import path from 'node:path';
import { formatTable, parseCommandArgs, usageError, type CliIo } from '../common/cli-support.js';
import { parseDuration } from '../common/duration.js';
import { connectAdmin } from './admin-client.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';
import type { CustomerView, SetupResult } from './msp/customers.js';
import type { AccountStatus } from './msp/sync-service.js';
import type { SyncRun } from './storage/msp-store.js';

const LINK_FLAGS = {
  ...ADMIN_FLAGS,
  file: { type: 'string' },
  api: { type: 'string' },
  user: { type: 'string' },
  'password-env': { type: 'string' },
  portal: { type: 'string' },
  account: { type: 'string' },
} as const;

/** Builds the portal credentials body from --file or --api/--user/--password-env. */
function credentialsOf(values: { file?: string; api?: string; user?: string; 'password-env'?: string; portal?: string }, env: NodeJS.ProcessEnv) {
  const portal = values.portal as 'msp' | 'business' | undefined;
  if (portal !== undefined && portal !== 'msp' && portal !== 'business') throw usageError('--portal is msp or business');
  if (values.file && values.api) throw usageError('give either --file or --api, not both');
  if (values.file) return { source: 'file' as const, file: path.resolve(values.file), portal };
  if (!values.api) throw usageError('give --file tree.json, or --api URL --user NAME --password-env VAR');
  if (!values.user || !values['password-env']) throw usageError('--api needs --user NAME and --password-env VAR');
  const password = env[values['password-env']];
  if (!password) throw usageError(`the environment variable ${values['password-env']} is empty or not set`);
  return { source: 'api' as const, baseUrl: values.api, user: values.user, password, portal };
}

function runLine(r: SyncRun): string {
  if (r.outcome === 'failed') return `failed at ${when(r.finishedAt)}: ${r.reason} [${r.errorCode}]`;
  return `${r.fetched} companies; added ${r.added}, renamed ${r.renamed}, moved ${r.moved}, unlinked ${r.unlinked}, relinked ${r.relinked}, updated ${r.updated}; ${r.finishedAt - r.startedAt} ms (${when(r.finishedAt)})`;
}

/** `rollcall msp link|sync|status|unlink`. */
export async function mspCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, LINK_FLAGS);
  const [sub] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  const account = values.account ? { account: values.account } : {};
  if (sub === 'link') {
    const res = await api.call<{ account: { id: string; name: string; rootGroupId: string }; run: SyncRun }>('POST', '/api/v1/msp/link', credentialsOf(values, env));
    if (values.json) io.out(JSON.stringify(res));
    else io.out(`linked "${res.account.name}" (${res.account.id}); first sync: ${runLine(res.run)}`);
    return res.run.outcome === 'failed' ? 7 : 0;
  }
  if (sub === 'sync') {
    const { run } = await api.call<{ run: SyncRun }>('POST', '/api/v1/msp/sync', account);
    io.out(values.json ? JSON.stringify({ run }) : `sync ${runLine(run)}`);
    return run.outcome === 'failed' ? 7 : 0;
  }
  if (sub === 'status' || sub === undefined) {
    const { accounts } = await api.call<{ accounts: AccountStatus[] }>('GET', '/api/v1/msp/accounts');
    if (values.json) {
      io.out(JSON.stringify({ accounts }));
      return 0;
    }
    if (accounts.length === 0) io.out('no MSP account is linked; link one with "rollcall msp link"');
    for (const s of accounts) {
      const progress = s.progress ? ` (${s.progress.phase}, ${s.progress.fetched} companies so far)` : '';
      io.out(
        [
          `${s.account.name} (${s.account.id}, ${s.account.portal} portal, from ${s.account.source}): ${s.state}${progress}`,
          `  last sync:    ${s.lastRun ? runLine(s.lastRun) : 'never'}`,
          ...(s.lastRun?.outcome === 'failed' && s.lastSuccess ? [`  last success: ${runLine(s.lastSuccess)}`] : []),
          `  next sync:    ${s.nextSyncAt === null ? '-' : when(s.nextSyncAt)}`,
        ].join('\n'),
      );
    }
    return 0;
  }
  if (sub === 'unlink') {
    const { account: a } = await api.call<{ account: { name: string } }>('POST', '/api/v1/msp/unlink', account);
    io.out(values.json ? JSON.stringify({ account: a }) : `unlinked "${a.name}": its customers are unlinked; groups and computers stay`);
    return 0;
  }
  throw usageError(`unknown msp command "${sub}"`);
}

/** `rollcall customers [setup|skip]`. */
export async function customersCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...ADMIN_FLAGS, 'all-new': { type: 'boolean' }, ttl: { type: 'string' } });
  const [sub, ref] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  if (sub === undefined || sub === 'list') {
    const { customers } = await api.call<{ customers: CustomerView[] }>('GET', '/api/v1/customers');
    if (values.json) io.out(JSON.stringify({ customers }));
    else
      io.out(
        formatTable(
          ['CUSTOMER', 'GROUP', 'STATUS', 'UPSTREAM', 'ONLINE', 'LATE', 'OFFLINE', 'NEVER'],
          customers.map((c) => [c.name, c.groupPath, c.status.replace(/_/g, ' '), c.upstreamStatus, ...(['online', 'late', 'offline', 'never_connected'] as const).map((k) => String(c.devices[k]))]),
        ),
      );
    return 0;
  }
  if (sub === 'setup') {
    if (!ref) throw usageError('customers setup needs a CUSTOMER (name, group path or id)');
    const ttlSec = values.ttl === undefined ? undefined : Math.round(parseDuration(values.ttl) / 1000);
    const r = await api.call<SetupResult>('POST', '/api/v1/customers/setup', { customer: ref, ttlSec });
    if (values.json) io.out(JSON.stringify(r));
    else {
      const user = 'password' in r.user ? `  admin user: ${r.user.username}\n  password:   ${r.user.password}` : `  admin user: ${r.user.username} (already existed; its password is unchanged)`;
      io.out(
        `customer "${r.customer.name}" is set up (status ${r.customer.status}); shown once:\n${user}\n  enrollment token (expires ${when(r.token.expiresAt)}): ${r.token.secret}\n\nOn each of the customer's computers:\n  ${r.token.agentCommand}`,
      );
    }
    return 0;
  }
  if (sub === 'skip') {
    if (!ref && !values['all-new']) throw usageError('customers skip needs a CUSTOMER or --all-new');
    const { customers } = await api.call<{ customers: CustomerView[] }>('POST', '/api/v1/customers/skip', ref ? { customer: ref } : { allNew: true });
    io.out(values.json ? JSON.stringify({ customers }) : `setup skipped for ${customers.length} customer${customers.length === 1 ? '' : 's'} (status normal)`);
    return 0;
  }
  throw usageError(`unknown customers command "${sub}"`);
}

/** `rollcall instance [delete]`. */
export async function instanceCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...LINK_FLAGS, confirm: { type: 'string' } });
  const [sub] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  if (sub === undefined || sub === 'show') {
    const info = await api.call<{ instanceId: string; creator: { portal: string; accountExternalId: string; accountName: string } | null; deleted: unknown }>('GET', '/api/v1/instance');
    if (values.json) io.out(JSON.stringify(info));
    else io.out(`instance ${info.instanceId}; created by ${info.creator ? `${info.creator.portal} portal account ${info.creator.accountExternalId} (${info.creator.accountName})` : 'no portal account yet'}${info.deleted ? '; DELETED' : ''}`);
    return 0;
  }
  if (sub === 'delete') {
    if (!values.confirm) throw usageError('instance delete needs --confirm INSTANCE_ID and the creating account\'s --file or --api/--user/--password-env');
    const r = await api.call<{ devicesRevoked: number }>('POST', '/api/v1/instance/delete', { credentials: credentialsOf(values, env), confirm: values.confirm });
    io.out(values.json ? JSON.stringify(r) : `instance deleted: ${r.devicesRevoked} devices revoked, accounts unlinked, enrollment tokens revoked`);
    return 0;
  }
  throw usageError(`unknown instance command "${sub}"`);
}
