"""CrossGuard policy pack of the sovereign stacks (`pulumi preview --policy-pack policy/`)."""
