package sipbridge

// algorithms lists the digest algorithms the node challenges with.
func (u *Users) algorithms() []string { return []string{"MD5"} }
