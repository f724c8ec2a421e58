"""What people read of a run: the charts, the HTML report and the run-complete message, with
their number formats and labels. May import the domain; never talks to AWS."""
