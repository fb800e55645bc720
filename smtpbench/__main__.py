from smtpbench.cli import main

main()
