package push_test

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/hiersip/hiersip/push"
	"github.com/hiersip/hiersip/push/pushtest"
)

// A call for alice's sleeping phone: the node pushes it through the
// gateway and forks the call to it once it has registered again.
func Example() {
	var contact sip.Uri
	_ = sip.ParseUri("sip:alice@192.0.2.5:5060;transport=tcp;pn-provider=apns;pn-param=DEF123GHIJ.com.example.voip;pn-prid=00fc13adff78512", &contact)
	params, _, _ := push.ParseContact(&contact)
	key := push.DeviceKey("sip:alice@pastry", "<urn:uuid:phone>", params)

	var waiter *push.Waiter
	gateway := pushtest.New(func(b push.Body) {
		fmt.Println("gateway: push", b.Type, "to", b.Provider, b.PRID)
		waiter.Registered(key) // the phone wakes and its REGISTER reaches the registrar
	})
	defer gateway.Close()
	client, _ := push.NewClient(gateway.URL)
	waiter, _ = push.NewWaiter(client, 0)
	defer waiter.Close()

	timerC, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := waiter.Wake(timerC, key, push.Notification{Params: params, Type: push.TypeCall, ID: "call-1", Expiry: time.Now().Add(3 * time.Minute)})
	fmt.Println("woken:", err == nil)
	// Output:
	// gateway: push call to apns 00fc13adff78512
	// woken: true
}
