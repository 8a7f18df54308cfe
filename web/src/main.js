// hiersip's page: the node's status for a person to read, and a browser
// phone. Query parameters: status (the status URL, default /status), wss,
// aor, target, autoanswer=1.
import { startStatus } from './status.js';
import { startPhone } from './phone.js';

const params = new URLSearchParams(location.search);
const statusURL = params.get('status') || document.body.dataset.statusUrl || '/status';
startStatus(document, statusURL, 2000);
window.hiersip = { phone: startPhone(document, params) };
