// Package process runs process managers (also called sagas): long-running
// business processes that react to events over time, such as an order
// that waits for its stock and its payment, and is cancelled if the
// payment does not come.
//
// The package lives under dispatch because a process is driven entirely by
// deliveries: each event reaches a process through a dispatch.Router, as
// an asynchronous handler's does, with the same inbox row, unit of work
// and retries, and everything a process does leaves through the outbox.
//
// # A process
//
// A process is state keyed by a correlation id, such as an order id, that
// the events it follows carry. Its state is a Go type of the
// application's, stored as JSON beside the process's own bookkeeping (its
// status, pending timeouts and steps) as one versioned aggregate, of type
// "process:<name>", in keel's aggregates table:
//
//	type Fulfilment struct {
//		Reserved, Paid bool
//	}
//
//	m, err := process.New[Fulfilment](router, process.Config{Name: "order-fulfilment"})
//
// An event starts it, registered with Start, and further events advance
// it, registered with On; both take a function that reads the process id
// from the event, and the handler:
//
//	process.Start(m, OrderPlaced.OrderID, func(ctx context.Context, p *process.Process[Fulfilment], e OrderPlaced) error {
//		p.Send(ReserveStock{Order: e.Order, SKU: e.SKU, Qty: e.Qty})
//		p.Schedule("payment", p.Now().Add(15*time.Minute), PaymentOverdue{Order: e.Order})
//		return nil
//	})
//	process.On(m, PaymentReceived.OrderID, func(ctx context.Context, p *process.Process[Fulfilment], e PaymentReceived) error {
//		p.State.Paid = true
//		p.Cancel("payment")
//		p.Step("take payment", RefundPayment{Order: e.Order, Amount: e.Amount})
//		if p.State.Reserved {
//			p.Send(ShipOrder{Order: e.Order})
//			p.Complete()
//		}
//		return nil
//	})
//
// A handler changes p.State and asks for effects: Send messages, Schedule
// and Cancel timeouts, record a Step with its compensation, and end the
// process with Complete or Compensate. They take effect when the handler
// returns nil, in the delivery's transaction: the new state, the messages
// and the delivery's inbox row commit together, or none of them does and
// the event is delivered again.
//
// # Concurrency
//
// Two events for one process delivered at once (a payment and its
// timeout, say) are serialised by the process's version: both load
// version v, the first to commit saves v+1, and the second's save
// conflicts, so its unit of work runs again on the state the first left.
// A process therefore sees its events one at a time, in some order, and
// each exactly once.
//
// # Timeouts
//
// A timeout is a scheduled outbox message (outbox.Message.NotBefore)
// carrying an event of the application's, keyed by the process id, whose
// id derives from the process and the timer's name. It is written in the
// transaction that schedules it, moved into the outbox by a running relay
// when it falls due, and delivered to the process's handler for its type
// like any other event. Cancel deletes it in the transaction that cancels
// it. When the timeout fell due in the same instant, so that it can no
// longer be deleted, the process forgets it instead, and absorbs it when
// it arrives: a cancelled timer never reaches the handler.
//
// Time is the store's clock (store.Options.Now): Process.Now reads it,
// and it decides when timeouts fall due, so tests advance a clock of
// their own and call Store.Notify, instead of sleeping.
//
// # Ending and compensation
//
// Complete ends a process. Compensate ends it by undoing what it did: each
// Step records something done and the event that undoes it, and
// Compensate sends those events in reverse order. Both cancel the pending
// timeouts. An event that arrives for a process that ended is absorbed:
// its inbox row is written, and nothing else happens.
//
// # Operations
//
// List and Manager.List return the running processes (or all of them)
// with their state, steps and next timeout; Types names the process types
// a store holds. The keel command's processes subcommand prints them.
package process
