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
/** The PostgreSQL major version startEmbeddedPostgres() starts (PG_TENANT_PG_MAJOR, default 18). */
export const embeddedMajor: number
