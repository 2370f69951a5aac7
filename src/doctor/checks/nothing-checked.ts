/**
 * NOTHING_CHECKED (error): the selection checked nothing, so an empty result would prove nothing.
 * One finding per schema named in `schemas` that does not exist, and one when no table or
 * partitioned table in the schemas checked has a tenant column (a misspelled `tenantColumn`, a
 * wrong schema, a database not migrated yet). A column that no table has while another tenant
 * column does is not reported: several columns may mark tenant tables of different kinds. Fix: a
 * comment naming what to check; there is no SQL to run.
 */
import type { Rule } from '../rule.js'
import type { FindingOf } from '../rule.js'

const CASE = 'names are compared exactly as stored in the catalog: unquoted names are lower case'

export const nothingChecked: Rule<'selection', 'NOTHING_CHECKED'> = {
  code: 'NOTHING_CHECKED',
  subject: 'selection',
  reads: 'readTenantTables: how many tables have a tenant column; readMissingSchemas: pg_namespace',
  check(selection, { opts }) {
    const findings: FindingOf<'NOTHING_CHECKED'>[] = selection.missingSchemas.map((schema) => ({
      severity: 'error',
      code: 'NOTHING_CHECKED',
      object: `schema ${schema}`,
      message: `schema ${JSON.stringify(schema)} does not exist, so nothing in it was checked (${CASE})`,
      fix: `-- check the spelling of the schema (--schema / schemas); existing schemas:\n-- select nspname from pg_namespace where nspname !~ '^pg_' order by 1;`,
    }))
    if (selection.tables === 0) {
      const columns = opts.columns.map((c) => JSON.stringify(c)).join(', ')
      const where = opts.schemas === null ? 'any schema' : `schema ${opts.schemas.map((s) => JSON.stringify(s)).join(', ')}`
      findings.push({
        severity: 'error',
        code: 'NOTHING_CHECKED',
        object: 'tenant tables',
        message: `no table in ${where} has a column named ${columns}: the doctor checked no tenant table, so a clean result would prove nothing. Check the tenant column (--column / tenantColumn) and the schemas (--schema / schemas); ${CASE}`,
        fix: `-- where the tenant column really is:\n-- select table_schema, table_name, column_name from information_schema.columns where column_name ilike '%tenant%' or column_name ilike '%org%';`,
      })
    }
    return findings.length === 0 ? undefined : findings
  },
}
