"""What arrives on the source topics: the wire forms, their decoder, and Faust records."""
