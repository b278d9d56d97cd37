import {SshPool} from '../src/ssh/index.js'
import {probeNode} from '../src/nodes/detect.js'
import {NativeNode} from '../src/nodes/native.js'
const B='/run/sideload-bed/beds/prof'
for (let i=0;i<3;i++){
const t0=performance.now()
const pool=new SshPool({identityFiles:[`${B}/id_ed25519`], knownHostsPath:`${B}/known_hosts`} as any)
const conn=await pool.get(pool.resolve('root@198.18.1.11'))
const t1=performance.now()
const probe=await probeNode(conn)
const t2=performance.now()
const node=await NativeNode.open('n1',conn,probe.sockets[0].path,{platform:probe.platform!})
const t3=performance.now()
console.log(`ssh ${(t1-t0).toFixed(0)} probe ${(t2-t1).toFixed(0)} native ${(t3-t2).toFixed(0)}`)
await node.close(); await pool.closeAll()
}
