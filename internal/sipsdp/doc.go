// Package sipsdp answers, once for the SIP bridge and the user agent, the two
// questions both ask of a SIP message's body: whether it is an SDP (by its
// Content-Type), and what it says (pion/sdp's parser; hiersip parses no SDP
// itself).
package sipsdp
