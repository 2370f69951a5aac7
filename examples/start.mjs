// `npm start`: runs the TypeScript demo (examples/demo.ts) through tsx's loader, in this process,
// so that Ctrl+C reaches the code that stops the apps and the embedded PostgreSQL.
import { register } from 'tsx/esm/api'

register()
await import('./demo.ts')
