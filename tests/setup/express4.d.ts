// `express4` is Express 4 installed under an alias (devDependency `express4: npm:express@^4`), to
// test the adapter against both majors. The middleware-facing API used in the tests is the same
// in both, so Express 5's types stand in for it.
declare module 'express4' {
  import express from 'express'
  export default express
}
