/**
 * The machine a bench ran on, and how much of it other work took meanwhile:
 * on a shared machine, other processes slow the wall-clock numbers (round
 * trips per second, latency) though not the CPU and RSS measured inside
 * each server.
 */
import fs from 'node:fs/promises';
import os from 'node:os';

/** The machine the bench ran on. */
export interface MachineFacts {
  readonly cpuModel: string;
  readonly cpuCount: number;
  readonly totalMemoryBytes: number;
  readonly nodeVersion: string;
  readonly os: string;
}

/** Describes this machine. */
export function describeMachine(): MachineFacts {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cpuCount: cpus.length,
    totalMemoryBytes: os.totalmem(),
    nodeVersion: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

/** Clock ticks per second of /proc/stat (USER_HZ, 100 on every mainstream Linux build). */
const USER_HZ = 100;

/**
 * CPU time the whole machine has spent busy since boot, in milliseconds,
 * from /proc/stat (user, nice, system, irq, softirq, steal); undefined where
 * there is no /proc/stat.
 */
export async function machineBusyMs(): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile('/proc/stat', 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const fields = /^cpu\s+(.*)$/m.exec(text)?.[1]?.trim().split(/\s+/).map(Number);
  if (!fields || fields.length < 8 || fields.some((n) => !Number.isFinite(n))) return undefined;
  const [user, nice, system, , , irq, softirq, steal] = fields as [number, number, number, number, number, number, number, number];
  return ((user + nice + system + irq + softirq + steal) * 1000) / USER_HZ;
}

/** How much CPU other processes took during the run. */
export interface ForeignLoad {
  /** CPU milliseconds used by processes other than the driver and the two servers. */
  readonly otherCpuMs: number;
  readonly wallMs: number;
  /** otherCpuMs as a share of the machine's capacity over the run (0..1). */
  readonly share: number;
}

/** Machine busy time minus our own processes' CPU, over a run. */
export function foreignLoad(busyBeforeMs: number, busyAfterMs: number, ownCpuMs: number, wallMs: number, cpuCount: number): ForeignLoad {
  const otherCpuMs = Math.max(0, busyAfterMs - busyBeforeMs - ownCpuMs);
  return { otherCpuMs, wallMs, share: wallMs > 0 && cpuCount > 0 ? otherCpuMs / (wallMs * cpuCount) : 0 };
}

/**
 * CPU time (ms) of a process and all its descendants, from /proc: each
 * live one's user and system time plus what its reaped children used
 * (cutime, cstime). Counted so, a child that exits between two readings is
 * not lost and not counted twice: its parent's cutime takes over exactly
 * what the child had. Undefined where there is no /proc.
 */
export async function treeCpuMs(rootPid: number = process.pid): Promise<number | undefined> {
  let names: string[];
  try {
    names = await fs.readdir('/proc');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const children = new Map<number, number[]>();
  const ticks = new Map<number, number>();
  await Promise.all(
    names
      .filter((n) => /^[0-9]+$/.test(n))
      .map(async (n) => {
        let text: string;
        try {
          text = await fs.readFile(`/proc/${n}/stat`, 'utf8');
        } catch {
          return; // gone since the listing
        }
        const stat = parseProcStat(text);
        if (!stat) return;
        const pid = Number(n);
        ticks.set(pid, stat.ownTicks + stat.reapedTicks);
        const siblings = children.get(stat.ppid);
        if (siblings) siblings.push(pid);
        else children.set(stat.ppid, [pid]);
      }),
  );
  if (!ticks.has(rootPid)) return undefined;
  let total = 0;
  const stack = [rootPid];
  while (stack.length > 0) {
    const pid = stack.pop()!;
    total += ticks.get(pid) ?? 0;
    stack.push(...(children.get(pid) ?? []));
  }
  return (total * 1000) / USER_HZ;
}

/**
 * The parent and the CPU ticks of a /proc/<pid>/stat line: the process's
 * own (user + system, all threads) and its reaped children's; undefined
 * when it does not parse.
 */
export function parseProcStat(text: string): { ppid: number; ownTicks: number; reapedTicks: number } | undefined {
  // The command name (field 2) is in parentheses and may hold spaces or parentheses: fields restart after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state): ppid is field 4, utime..cstime fields 14-17.
  const nums = [rest[1], rest[11], rest[12], rest[13], rest[14]].map(Number);
  if (rest.length < 15 || nums.some((v) => !Number.isFinite(v))) return undefined;
  const [ppid, utime, stime, cutime, cstime] = nums as [number, number, number, number, number];
  return { ppid, ownTicks: utime + stime, reapedTicks: cutime + cstime };
}

/** Reads, over a stretch of a run, how much of the machine went to processes outside this one's tree. */
export class ForeignMeter {
  private constructor(
    private readonly busyMs: number,
    private readonly ownMs: number,
    private readonly startedAt: number,
  ) {}

  /** Starts a stretch; undefined where /proc cannot tell. */
  static async start(): Promise<ForeignMeter | undefined> {
    const [busy, own] = await Promise.all([machineBusyMs(), treeCpuMs()]);
    return busy === undefined || own === undefined ? undefined : new ForeignMeter(busy, own, performance.now());
  }

  /** Other processes' CPU since the start, and its share of the machine; undefined where /proc cannot tell. */
  async read(cpuCount: number = os.cpus().length): Promise<ForeignLoad | undefined> {
    const [busy, own] = await Promise.all([machineBusyMs(), treeCpuMs()]);
    if (busy === undefined || own === undefined) return undefined;
    return foreignLoad(this.busyMs, busy, own - this.ownMs, performance.now() - this.startedAt, cpuCount);
  }

  /** Other processes' CPU since the start, as a share of the machine (0..1); undefined where /proc cannot tell. */
  async share(cpuCount?: number): Promise<number | undefined> {
    return (await this.read(cpuCount))?.share;
  }
}
