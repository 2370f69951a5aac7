// The test setup's PostgreSQL: the same starter the benchmarks and examples use.
export { freePort, startEmbeddedPostgres } from '../../scripts/embedded-postgres.mjs'
export type { RunningPostgres } from '../../scripts/embedded-postgres.mjs'
