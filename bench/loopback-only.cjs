// Preloaded (node --require) into anchors that cannot be told which address to bind
// (supergateway 4.0.0 calls app.listen(port), i.e. every interface). It makes any
// listen() that names no host bind to 127.0.0.1 instead, so bench/run.sh keeps all
// traffic on loopback. run.sh also checks the bound address with `ss`.
'use strict';
const net = require('node:net');
const orig = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    const port = Number(args[0]);
    const cb = args.find((a) => typeof a === 'function');
    return cb ? orig.call(this, port, '127.0.0.1', cb) : orig.call(this, port, '127.0.0.1');
  }
  if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].host) {
    args[0] = { ...args[0], host: '127.0.0.1' };
  }
  return orig.apply(this, args);
};
