/**
 * `rollcall`: the server (`rollcall server`) and the admin commands that
 * talk to its console API. Exit codes are listed in docs/errors.md.
 */
import { pino } from 'pino';
import { formatTable, parseCommandArgs, processIo, runCli, usageError, type CliIo } from '../common/cli-support.js';
import { parseDuration } from '../common/duration.js';
import { RollcallError } from '../common/errors.js';
import { ROLLCALL_VERSION } from '../common/version.js';
import { connectAdmin, type AdminClient } from './admin-client.js';
import { ADMIN_FLAGS, adminTarget, when } from './cli-common.js';
import { customersCommand, instanceCommand, mspCommand } from './cli-msp.js';
import { healthCommand } from './cli-health.js';
import { INSTALLER_HELP, installerCommand } from './cli-installer.js';
import { QUESTIONS_HELP, questionsCommand } from './cli-questions.js';
import { CA_HELP, caCommand } from './cli-ca.js';
import { PORTCHECK_HELP, portcheckCommand } from './cli-portcheck.js';
import { resolveServerConfig } from './config.js';
import type { DeviceView } from './device-view.js';
import { buildServer } from './server.js';

/** Documented exit codes of rollcall. */
export const CLI_EXIT = { OK: 0, ERROR: 1, USAGE: 2, NO_SERVER: 3, UNAUTHORIZED: 4, NOT_FOUND: 5, REFUSED: 6, SERVER_ERROR: 7, CANNOT_START: 8 } as const;

const HELP = `rollcall ${ROLLCALL_VERSION}: agent-connectivity server and admin CLI

Server:
  rollcall server [--data-dir ./data] [--agent-port 2222] [--console-port 8443]
                  [--public-host NAME …] [--listen-host 0.0.0.0] [--interval 60] [--msp-sync-interval 24h]
                  [--console-exposure public|restricted] [--alert-webhook URL] [--port-alert-after 15m]
                  [--log-level info] [--agent-binary FILE] [--agent-binary-windows FILE]
                  [--agent-workers 0] [--max-agents 200000] [--max-pending-handshakes 256]
    Environment: ROLLCALL_DATA_DIR, ROLLCALL_AGENT_PORT, ROLLCALL_CONSOLE_PORT,
    ROLLCALL_PUBLIC_HOST (comma-separated), ROLLCALL_LISTEN_HOST, ROLLCALL_CHECKIN_INTERVAL,
    ROLLCALL_MSP_SYNC_INTERVAL, ROLLCALL_CONSOLE_EXPOSURE, ROLLCALL_ALERT_WEBHOOK,
    ROLLCALL_PORT_ALERT_AFTER_MIN, ROLLCALL_LOG_LEVEL, ROLLCALL_AGENT_BINARY, ROLLCALL_AGENT_BINARY_WINDOWS,
    ROLLCALL_AGENT_WORKERS (agent worker processes; 0: one process, see docs/operations.md),
    ROLLCALL_MAX_AGENTS, ROLLCALL_MAX_PENDING_HANDSHAKES.
    --max-pending-handshakes: agent connections allowed in their TLS handshake at once (per agent
    worker); more are shed before TLS and retry later (raise on more cores, lower if the console
    slows in a storm).

Admin commands (talk to the console API):
  rollcall token create --group PATH|ID [--ttl 7d] [--uses N] [--note TEXT] [--json]
  rollcall token list [--json]
  rollcall token revoke TOKEN_ID
  rollcall devices [--group PATH|ID] [--json]
  rollcall devices show DEVICE_ID [--json]
  rollcall devices revoke DEVICE_ID
  rollcall devices move DEVICE_ID GROUP
  rollcall groups [--json]
  rollcall groups create PATH
  rollcall groups delete PATH|ID
  rollcall groups rename PATH|ID NEW_NAME
  rollcall groups move PATH|ID NEW_PARENT
  rollcall msp link --file TREE.json | --api URL --user NAME --password-env VAR  [--portal msp|business]
  rollcall msp sync [--account A]
  rollcall msp status [--json]
  rollcall msp unlink [--account A]
  rollcall customers [--json]
  rollcall customers setup CUSTOMER [--ttl 30d] [--json]
  rollcall customers skip CUSTOMER | --all-new
  rollcall instance [--json]
${INSTALLER_HELP}
${QUESTIONS_HELP}
  rollcall health [--all] [--json]   ports, customers' reachability with probable causes, certificates, alerts
${CA_HELP}
  rollcall instance delete --confirm INSTANCE_ID (--file TREE.json | --api URL --user NAME --password-env VAR)
  Reaching the API: --data-dir DIR on the server machine (default ./data), or
  --server https://HOST:8443 with ROLLCALL_API_TOKEN and --ca-pin sha256:… (ROLLCALL_CA_PIN) or --ca-file FILE.

${PORTCHECK_HELP}

Exit codes: 0 ok; 1 unexpected error; 2 usage; 3 server unreachable; 4 unauthorized;
5 not found; 6 refused (conflict or invalid request); 7 server error; 8 server cannot start.
Add --debug for stack traces.`;


function exitCodeOf(err: unknown): number {
  if (!(err instanceof RollcallError)) {
    const code = (err as { code?: string }).code;
    return code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL' ? CLI_EXIT.CANNOT_START : CLI_EXIT.ERROR;
  }
  const c = err.code;
  if (c === 'USAGE' || c === 'DURATION_INVALID' || c === 'CONFIG_INVALID' || c === 'PIN_MALFORMED') return CLI_EXIT.USAGE;
  if (c === 'NO_SERVER' || c === 'TIMEOUT' || c === 'CA_PIN_MISMATCH' || c.startsWith('TLS_')) return CLI_EXIT.NO_SERVER;
  if (c === 'UNAUTHORIZED') return CLI_EXIT.UNAUTHORIZED;
  if (c.endsWith('NOT_FOUND')) return CLI_EXIT.NOT_FOUND;
  if (c === 'INTERNAL' || c === 'STORAGE_ERROR' || c.startsWith('HTTP_5')) return CLI_EXIT.SERVER_ERROR;
  return CLI_EXIT.REFUSED;
}

async function serverCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values } = parseCommandArgs(args, {
    'data-dir': { type: 'string' },
    'agent-port': { type: 'string' },
    'console-port': { type: 'string' },
    'public-host': { type: 'string', multiple: true },
    'listen-host': { type: 'string' },
    interval: { type: 'string' },
    'msp-sync-interval': { type: 'string' },
    'console-exposure': { type: 'string' },
    'alert-webhook': { type: 'string' },
    'port-alert-after': { type: 'string' },
    'log-level': { type: 'string' },
    'agent-binary': { type: 'string' },
    'agent-binary-windows': { type: 'string' },
    'agent-workers': { type: 'string' },
    'max-pending-handshakes': { type: 'string' },
    'max-agents': { type: 'string' },
    debug: { type: 'boolean' },
  });
  const mspSync = values['msp-sync-interval'] ?? env.ROLLCALL_MSP_SYNC_INTERVAL;
  const portAlertAfter = values['port-alert-after'];
  const config = resolveServerConfig(
    {
      dataDir: values['data-dir'],
      agentPort: values['agent-port'],
      consolePort: values['console-port'],
      publicHosts: values['public-host'],
      listenHost: values['listen-host'],
      checkinIntervalSec: values.interval,
      mspSyncIntervalSec: mspSync === undefined ? undefined : /^\d+$/.test(mspSync) ? mspSync : Math.round(parseDuration(mspSync) / 1000),
      consoleExposure: values['console-exposure'],
      alertWebhookUrl: values['alert-webhook'],
      portAlertAfterMin: portAlertAfter === undefined ? undefined : /^\d+$/.test(portAlertAfter) ? portAlertAfter : Math.max(1, Math.round(parseDuration(portAlertAfter) / 60_000)),
      logLevel: values['log-level'],
      agentBinary: values['agent-binary'],
      agentBinaryWindows: values['agent-binary-windows'],
      agentWorkers: values['agent-workers'],
      maxPendingHandshakes: values['max-pending-handshakes'],
      maxAgents: values['max-agents'],
    },
    env,
  );
  const log = pino({ level: config.logLevel, base: { program: 'rollcall' } });
  const server = await buildServer(config, { log });
  try {
    await server.start();
  } catch (err) {
    await server.close();
    throw err;
  }
  const adminUser = await server.createInitialAdminUser();
  const adminToken = await server.createInitialAdminToken();
  const cliFile = await server.writeLocalCliCredentials();
  const host = config.publicHosts[0] ?? 'localhost';
  io.out(
    [
      '',
      `Rollcall ${ROLLCALL_VERSION} is running (instance ${server.storage.instanceId})`,
      `  agent port:    ${server.agentPort}   (agents: ${host}:${server.agentPort})`,
      `  console port:  ${server.consolePort}   (API: https://${host}:${server.consolePort}/api/v1)`,
      `  data:          ${config.dataDir}`,
      `  CA pin:        ${server.pki.caPin}`,
      `  web console:   https://${host}:${server.consolePort}/`,
      ...(adminUser?.password ? [`  console login (shown once, store it now): ${adminUser.username} / ${adminUser.password}`] : []),
      ...(adminUser && !adminUser.password ? [`  console login: ${adminUser.username} with the password from ROLLCALL_ADMIN_PASSWORD`] : []),
      ...(adminToken ? [`  admin API token (shown once, store it now): ${adminToken}`] : []),
      `  local admin commands use ${cliFile}`,
      ...(config.publicHosts.length === 0
        ? ['  note: no --public-host given, so the certificate names only localhost and 127.0.0.1;', '        for agents on other computers, restart with --public-host <the name they will dial>']
        : []),
      '',
      'Next: create a group and an enrollment token, then run the printed command on a computer:',
      `  npx rollcall groups create Customers/Example --data-dir ${config.dataDir}`,
      `  npx rollcall token create --group Customers/Example --data-dir ${config.dataDir}`,
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    const stop = (signal: string): void => {
      log.info({ signal }, 'stopping');
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await server.close();
  return CLI_EXIT.OK;
}



function deviceRows(devices: readonly DeviceView[]): string[][] {
  const note = (d: DeviceView): string =>
    [d.placementReason ? `in Lost & found: ${d.placementReason}` : '', d.possibleCloneAt ? `possible clone since ${when(d.possibleCloneAt)}` : ''].filter(Boolean).join('; ');
  return devices.map((d) => [d.id, d.hostname, d.groupPath, d.status, when(d.lastCheckinAt), d.agentVersion ?? '-', d.address ?? '-', note(d)]);
}

async function tokenCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    ...ADMIN_FLAGS,
    group: { type: 'string' },
    ttl: { type: 'string' },
    uses: { type: 'string' },
    note: { type: 'string' },
  });
  const [sub, id] = positionals;
  const api = (): Promise<AdminClient> => connectAdmin(adminTarget(values, env));
  if (sub === 'create') {
    if (!values.group) throw usageError('token create needs --group PATH|ID');
    const uses = values.uses === undefined ? undefined : Number(values.uses);
    if (uses !== undefined && (!Number.isInteger(uses) || uses < 1)) throw usageError('--uses must be a whole number of at least 1');
    const ttlSec = values.ttl === undefined ? undefined : Math.round(parseDuration(values.ttl) / 1000);
    const t = await (await api()).call<{ id: string; token: string; groupPath: string; expiresAt: string | null; maxUses: number | null; agentCommand: string }>(
      'POST',
      '/api/v1/enrollment-tokens',
      { group: values.group, ttlSec, maxUses: uses, note: values.note },
    );
    if (values.json) io.out(JSON.stringify(t));
    else
      io.out(
        `enrollment token ${t.id} for "${t.groupPath}" (expires ${when(t.expiresAt)}, uses ${t.maxUses ?? 'unlimited'}); shown once:\n  ${t.token}\n\nOn the computer to enroll:\n  ${t.agentCommand}`,
      );
    return CLI_EXIT.OK;
  }
  if (sub === 'list' || sub === undefined) {
    const { tokens } = await (await api()).call<{ tokens: { id: string; groupPath: string | null; expiresAt: string | null; uses: number; maxUses: number | null; revokedAt: string | null }[] }>(
      'GET',
      '/api/v1/enrollment-tokens',
    );
    if (values.json) io.out(JSON.stringify({ tokens }));
    else io.out(formatTable(['ID', 'GROUP', 'EXPIRES', 'USES', 'REVOKED'], tokens.map((t) => [t.id, t.groupPath ?? '(deleted)', when(t.expiresAt), `${t.uses}/${t.maxUses ?? '∞'}`, when(t.revokedAt)])));
    return CLI_EXIT.OK;
  }
  if (sub === 'revoke') {
    if (!id) throw usageError('token revoke needs TOKEN_ID');
    await (await api()).call('POST', `/api/v1/enrollment-tokens/${encodeURIComponent(id)}/revoke`, {});
    io.out(`token ${id} revoked`);
    return CLI_EXIT.OK;
  }
  throw usageError(`unknown token command "${sub}"`);
}

async function devicesCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { ...ADMIN_FLAGS, group: { type: 'string' } });
  const [sub, id, group] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  if (sub === undefined || sub === 'list') {
    const q = values.group ? `?group=${encodeURIComponent(values.group)}` : '';
    const { devices } = await api.call<{ devices: DeviceView[] }>('GET', `/api/v1/devices${q}`);
    if (values.json) io.out(JSON.stringify({ devices }));
    else io.out(formatTable(['ID', 'HOSTNAME', 'GROUP', 'STATUS', 'LAST CHECK-IN', 'VERSION', 'ADDRESS', 'NOTE'], deviceRows(devices)));
    return CLI_EXIT.OK;
  }
  if (!id) throw usageError(`devices ${sub} needs DEVICE_ID`);
  const path = `/api/v1/devices/${encodeURIComponent(id)}`;
  let device: DeviceView;
  if (sub === 'show') device = await api.call<DeviceView>('GET', path);
  else if (sub === 'revoke') device = await api.call<DeviceView>('POST', `${path}/revoke`, {});
  else if (sub === 'move') {
    if (!group) throw usageError('devices move needs DEVICE_ID GROUP');
    device = await api.call<DeviceView>('POST', `${path}/move`, { group });
  } else throw usageError(`unknown devices command "${sub}"`);
  if (values.json) io.out(JSON.stringify(device));
  else if (sub === 'show') io.out(Object.entries(device).map(([k, v]) => `${k.padEnd(22)}${v ?? '-'}`).join('\n'));
  else io.out(`${device.id} (${device.hostname}): ${sub === 'revoke' ? 'revoked; its connection was closed' : `moved to "${device.groupPath}"`}`);
  return CLI_EXIT.OK;
}

async function groupsCommand(args: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, ADMIN_FLAGS);
  const [sub, arg] = positionals;
  const api = await connectAdmin(adminTarget(values, env));
  type GroupOut = { id: string; parentId: string | null; name: string; kind: string; path: string; devices: number };
  if (sub === undefined || sub === 'list') {
    const { groups } = await api.call<{ groups: GroupOut[] }>('GET', '/api/v1/groups');
    if (values.json) {
      io.out(JSON.stringify({ groups }));
      return CLI_EXIT.OK;
    }
    const children = (parent: string | null): GroupOut[] => groups.filter((g) => g.parentId === parent).sort((a, b) => (a.kind === 'lost_found' ? -1 : b.kind === 'lost_found' ? 1 : a.name.localeCompare(b.name)));
    const lines: string[] = [];
    const walk = (g: GroupOut, depth: number): void => {
      lines.push(`${'  '.repeat(depth)}${g.name}  (${g.devices} device${g.devices === 1 ? '' : 's'}; ${g.id}${g.kind === 'static' ? '' : `; built-in`})`);
      for (const c of children(g.id)) walk(c, depth + 1);
    };
    for (const root of children(null)) walk(root, 0);
    io.out(lines.join('\n'));
    return CLI_EXIT.OK;
  }
  if (!arg) throw usageError(`groups ${sub} needs a PATH`);
  if (sub === 'create') {
    const g = await api.call<GroupOut>('POST', '/api/v1/groups', { path: arg });
    io.out(values.json ? JSON.stringify(g) : `group "${g.path}" (${g.id})`);
    return CLI_EXIT.OK;
  }
  if (sub === 'delete') {
    await api.call('DELETE', `/api/v1/groups/${encodeURIComponent(arg)}`);
    io.out(`group "${arg}" deleted`);
    return CLI_EXIT.OK;
  }
  if (sub === 'rename' || sub === 'move') {
    const target = positionals[2];
    if (!target) throw usageError(sub === 'rename' ? 'groups rename needs PATH|ID NEW_NAME' : 'groups move needs PATH|ID NEW_PARENT');
    const g = await api.call<GroupOut>('POST', `/api/v1/groups/${encodeURIComponent(arg)}/${sub}`, sub === 'rename' ? { name: target } : { parent: target });
    io.out(values.json ? JSON.stringify(g) : `group is now "${g.path}"`);
    return CLI_EXIT.OK;
  }
  throw usageError(`unknown groups command "${sub}"`);
}

/** Entry point; returns the exit code. */
export async function rollcallMain(argv: string[], env: NodeJS.ProcessEnv = process.env, io: CliIo = processIo): Promise<number> {
  const [command, ...rest] = argv;
  return runCli(
    async () => {
      if (command === '--version' || command === 'version') {
        io.out(`rollcall ${ROLLCALL_VERSION}`);
        return CLI_EXIT.OK;
      }
      if (command === undefined || command === '--help' || command === 'help' || rest.includes('--help')) {
        io.out(HELP);
        return command === undefined ? CLI_EXIT.USAGE : CLI_EXIT.OK;
      }
      switch (command) {
        case 'server':
          return serverCommand(rest, env, io);
        case 'token':
          return tokenCommand(rest, env, io);
        case 'devices':
          return devicesCommand(rest, env, io);
        case 'groups':
          return groupsCommand(rest, env, io);
        case 'msp':
          return mspCommand(rest, env, io);
        case 'customers':
          return customersCommand(rest, env, io);
        case 'instance':
          return instanceCommand(rest, env, io);
        case 'health':
          return healthCommand(rest, env, io);
        case 'questions':
          return questionsCommand(rest, env, io);
        case 'installer':
          return installerCommand(rest, env, io);
        case 'ca':
          return caCommand(rest, env, io);
        case 'portcheck':
          return portcheckCommand(rest, env, io);
        default:
          throw usageError(`unknown command "${command}"; see rollcall --help`);
      }
    },
    io,
    argv.includes('--debug'),
    exitCodeOf,
  );
}
