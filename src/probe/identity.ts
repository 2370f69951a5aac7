/**
 * Row identity: how the probe tells that two sessions saw the same row. The primary key when the
 * table has one (its values as a row literal, `row(a, b)::text`): stable across sessions and
 * updates. Otherwise the physical address with the table it lives in (`tableoid:ctid`, unique in a
 * partitioned table too): exact for a table no one writes during the probe; a row moved by a
 * concurrent UPDATE can only hide an overlap, never invent one. Not a hash of the row's text
 * (`md5(t::text)`), which would merge identical rows and needs every column readable, except for
 * views and materialized views, which have neither a primary key nor a ctid to compare.
 */
import { quoteTrusted } from '../sql/ident.js'
import type { ProbeTable } from './catalog.js'
import type { RowIdentity } from './types.js'

/** The identity the probe uses for `table`. */
export function identityOf(table: ProbeTable): RowIdentity {
  if (table.kind !== 'table') return { kind: 'row-hash' }
  return table.primaryKey.length > 0 ? { kind: 'primary-key', columns: table.primaryKey } : { kind: 'ctid' }
}

/** The SQL expression (text) of a row's identity, over the table aliased `t`. */
export function identitySql(identity: RowIdentity): string {
  if (identity.kind === 'ctid') return `(t.tableoid::oid::text || ':' || t.ctid::text)`
  if (identity.kind === 'row-hash') return 'md5(t::text)'
  return `row(${identity.columns.map((c) => `t.${quoteTrusted(c)}`).join(', ')})::text`
}

/** How the identity is shown: `primary key (id)` or `ctid`. */
export function describeIdentity(identity: RowIdentity): string {
  if (identity.kind === 'ctid') return 'tableoid:ctid (no primary key)'
  if (identity.kind === 'row-hash') return 'md5 of the row text (a view)'
  return `primary key (${identity.columns.join(', ')})`
}
