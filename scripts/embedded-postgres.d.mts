export interface RunningPostgres {
  /** A superuser connection string. */
  readonly url: string
  readonly port: number
  stop(): Promise<void>
}
export function freePort(): Promise<number>
export function startEmbeddedPostgres(options?: {
  log?: boolean
  settings?: Record<string, string>
}): Promise<RunningPostgres>
