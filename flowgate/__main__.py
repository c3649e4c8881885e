from flowgate.cli import main

main()
