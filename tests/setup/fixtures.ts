/**
 * A database of its own for each test file (see tests/setup/database.ts), on the server the global
 * setup started.
 */
import { inject } from 'vitest'
import { createDatabase, type TestDatabase } from './database.js'

export {
  CONNECTION_STATE_SQL,
  STATE_SQL,
  type ConnectionState,
  type State,
  type TestDatabase,
} from './database.js'

export function createTestDatabase(): Promise<TestDatabase> {
  return createDatabase(inject('pgAdminUrl'), inject('pgBouncerPort'), inject('pgBouncerSmallPort'))
}
