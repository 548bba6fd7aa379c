/** Types of the part of postject's API the agent build uses (the package ships none). */
declare module 'postject' {
  /** Injects `resource` into the executable `file` under `name`, flipping `sentinelFuse`. */
  export function inject(file: string, name: string, resource: Buffer, options?: { sentinelFuse?: string; machoSegmentName?: string; overwrite?: boolean }): Promise<void>;
}
