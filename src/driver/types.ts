/**
 * Structural types for the driver, as kysely's Postgres dialect does: pg-tenant never imports
 * `pg`'s types, so it works with any pg 8.x and with look-alikes that have the same shape.
 */

/** A row as `pg` returns it: an object keyed by column name (or an array with `rowMode: 'array'`). */
export type Row = Record<string, any>

/** Column metadata of a result. */
export interface FieldLike {
  readonly name: string
  readonly dataTypeID: number
}

/**
 * What a query resolves to; the subset of `pg`'s `QueryResult` that pg-tenant relies on and passes
 * through unchanged.
 */
export interface QueryResultLike<R = Row> {
  command: string
  rowCount: number | null
  rows: R[]
  fields: FieldLike[]
  oid?: number
}

/**
 * A query as an object, as `pg` accepts it.
 *
 * @example
 * ```ts
 * await db.query({ text: 'select id, name from t where id = $1', values: [1], rowMode: 'array' })
 * ```
 */
export interface QueryConfigLike {
  text: string
  values?: readonly unknown[] | undefined
  /** A prepared-statement name, reused across executions on the same connection. */
  name?: string | undefined
  /** `'array'`: rows as arrays instead of objects. */
  rowMode?: 'array' | undefined
  /** Custom type parsers (`{ getTypeParser(oid, format) }`). */
  types?: unknown
  /** Per-query timeout in milliseconds, as `pg` understands it. */
  query_timeout?: number | undefined
}

/** A pooled client, as `pg.Pool#connect()` resolves it. */
export interface PgClientLike {
  query(config: QueryConfigLike | string, values?: readonly unknown[]): Promise<QueryResultLike<any>>
  /** A submittable (pg-cursor, pg-query-stream, pg-tenant's own pipeline): pg hands it the connection. */
  query<S extends { submit(connection: any): unknown }>(submittable: S): S
  /** Returns the client to its pool; `true` or an Error destroys it instead. */
  release(destroy?: boolean | Error): void
  on(event: 'error', listener: (err: Error) => void): unknown
  removeListener(event: 'error', listener: (err: Error) => void): unknown
  /** The backend pid, for diagnostics. */
  readonly processID?: number | null
}

/**
 * The pool pg-tenant wraps: a `pg.Pool`, or anything with the same `connect` and `end`.
 *
 * @example
 * ```ts
 * import pg from 'pg'
 * const pool: PgPoolLike = new pg.Pool({ connectionString: process.env.DATABASE_URL })
 * ```
 */
export interface PgPoolLike {
  connect(): Promise<PgClientLike>
  end(): Promise<void>
}
