/**
 * What the documentation's code fragments take from the text around them (`npm run check:docs`,
 * scripts/check-snippets.mjs): the pg pool and the pg-tenant pool made in the quick starts, and
 * the usual objects of an application. Blocks marked `<!-- snippet: complete -->` never see these.
 */
declare global {
  /** A pg pool of the application's login role: `new pg.Pool({ connectionString: process.env.DATABASE_URL })`. */
  const pool: import('pg').Pool
  /** `createTenantPool(pool)`. */
  const db: import('pg-tenant').TenantPool<import('pg').Pool>
  /** A pool of the tables' owner, for migrations (never the application's login role). */
  const owner: import('pg').Pool
  /** An application's logger. */
  const logger: { error(fields: object, message: string): void; info(message: string): void }
  /** An application's tracer. */
  const tracer: { record(span: object): void }
}

export {}
