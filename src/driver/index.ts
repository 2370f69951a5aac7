/**
 * The driver: the only code that touches node-postgres' internals (its Connection's writer and
 * named-statement bookkeeping, its Query class, the client's connection). The rest of pg-tenant
 * uses what is exported here and nothing else of pg's (tests/unit/driver-boundary.test.ts checks).
 * What the installed pg must provide is checked once, when a pool is wrapped (capabilities.ts).
 */
export type { PgClientLike, PgPoolLike, QueryConfigLike, QueryResultLike, FieldLike, Row } from './types.js'
export { TenantQuery, mayRunCallerCode, type QueryClass, type TenantQueryHooks } from './pipeline.js'
export { preparedName, type PrefixStatement } from './statements.js'
export type { TransactionStatus } from './connection.js'
export { queryClassOf, statusOf, pidOf, guardSubmittable, looksLikeClient, localPortOf } from './client.js'
export { checkout, checkoutWith, type CheckedOut } from './checkout.js'
export { checkPool, checkClient, pgVersionOf } from './capabilities.js'
