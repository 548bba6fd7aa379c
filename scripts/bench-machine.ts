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

/** CPU (user + system, all threads) one process has used so far, in milliseconds, from /proc/<pid>/stat; undefined where it cannot be read. */
export async function processCpuMs(pid: number): Promise<number | undefined> {
  let text: string;
  try {
    text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined; // no procfs, or the process is gone: the caller leaves the figure out
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' '); // from the 3rd field (state) on
  const utime = Number(fields[11]); // the 14th field
  const stime = Number(fields[12]); // the 15th
  return Number.isFinite(utime) && Number.isFinite(stime) ? ((utime + stime) * 1000) / USER_HZ : undefined;
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
