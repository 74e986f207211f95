// Suites that need Node: they read files or run libp2p nodes that listen on
// 127.0.0.1 (a browser cannot listen on WebSockets). aegir runs this file in
// Node only; browser and worker runs use test/browser.ts instead.
import './protocol-doc.node.ts'
import './car-mirror.node.ts'
import './budgets.node.ts'
import './mixin.node.ts'
import './pin.node.ts'
import './providers.node.ts'
import './broker.node.ts'
import './core/yielder.node.ts'
import './core/bloom/xxh3-native.node.ts'
import './hostile/faults.node.ts'
import './hostile/load.node.ts'
import './hostile/malicious.node.ts'
import './simulation/sessions.node.ts'
import './conformance/conformance.node.ts'
import './regressions/issue-8.node.ts'
import './hostile/attacks/attacks.node.ts'
